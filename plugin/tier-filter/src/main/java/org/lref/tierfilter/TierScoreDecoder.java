package org.lref.tierfilter;

/**
 * Decodes {@code score = tier_rank + (order_key * 10 + level_number) / 100000}.
 * Mirrors the Python reference decoder {@code decode_score} exactly (double arithmetic).
 */
public final class TierScoreDecoder {

    private TierScoreDecoder() {}

    /** Returns the decoded score, or null when the score was not produced by our reranker. */
    public static TierScore decode(double score) {
        if (Double.isNaN(score) || !(score >= 0.0 && score < 3)) {
            return null;
        }
        double floor = Math.floor(score);
        double scaled = (score - floor) * 100000;
        // Math.rint rounds half to even like Python's round(); ties are rejected below anyway.
        double units = Math.rint(scaled);
        if (Math.abs(scaled - units) > 0.05) {
            return null;
        }
        long u = (long) units;
        if (u % 10 == 0) {
            return null;
        }
        return new TierScore(Tier.fromRank((int) floor), (int) (u % 10));
    }

    /** Float overload: the rerank processor stores float32 scores; widen before decoding. */
    public static TierScore decode(float score) {
        return decode((double) score);
    }
}
