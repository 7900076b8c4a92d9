package org.lref.tierfilter;

import org.opensearch.common.document.DocumentField;
import org.opensearch.search.SearchHit;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** Pure filtering logic of lref_tier, independent of the pipeline plumbing. */
public final class TierFilter {

    public static final String FIELD_TIER = "lref_tier";
    public static final String FIELD_LEVEL = "lref_level";
    public static final String FIELD_LABEL = "lref_label";

    public static final String REASON_UNCHANGED = "hits identical to the lref_capture snapshot: rerank did not run";

    /** Result of {@link #apply}; {@code hits} is the input array itself when nothing changed. */
    public record Outcome(SearchHit[] hits, float maxScore, LrefResponseExt summary) {
    }

    private TierFilter() {}

    /**
     * @param hits       hits after the rerank step, sorted by score descending
     * @param capture    snapshot taken by lref_capture before rerank, or null when absent
     * @param originalMaxScore max_score of the incoming response, kept when nothing changes
     * @param levelNames level names worst first, or null
     */
    public static Outcome apply(
        SearchHit[] hits,
        HitSnapshot capture,
        float originalMaxScore,
        Tier minTier,
        boolean filter,
        List<String> levelNames
    ) {
        String notReranked = notRerankedReason(hits, capture);
        if (notReranked != null) {
            // Fail open: never drop anything we cannot prove was judged by the reranker.
            LrefResponseExt summary = new LrefResponseExt(false, notReranked, minTier, filter, hits.length, List.of(), Map.of());
            return new Outcome(hits, originalMaxScore, summary);
        }

        Map<Tier, Integer> counts = new EnumMap<>(Tier.class);
        List<SearchHit> kept = new ArrayList<>(hits.length);
        List<DroppedHit> dropped = new ArrayList<>();
        float maxScore = Float.NaN;
        for (SearchHit hit : hits) {
            TierScore decoded = TierScoreDecoder.decode(hit.getScore());
            counts.merge(decoded.tier(), 1, Integer::sum);
            String label = labelFor(levelNames, decoded.level());
            if (filter && decoded.tier().isBelow(minTier)) {
                dropped.add(new DroppedHit(hit.getIndex(), hit.getId(), hit.getScore(), decoded.tier(), decoded.level(), label));
                continue;
            }
            annotate(hit, decoded, label);
            kept.add(hit);
            if (Float.isNaN(maxScore) || hit.getScore() > maxScore) {
                maxScore = hit.getScore();
            }
        }
        LrefResponseExt summary = new LrefResponseExt(true, null, minTier, filter, kept.size(), dropped, counts);
        SearchHit[] out = dropped.isEmpty() ? hits : kept.toArray(new SearchHit[0]);
        return new Outcome(out, maxScore, summary);
    }

    /** Null when the hits look reranked by our model; otherwise why not. */
    static String notRerankedReason(SearchHit[] hits, HitSnapshot capture) {
        if (capture != null && capture.matches(hits)) {
            return REASON_UNCHANGED;
        }
        for (SearchHit hit : hits) {
            if (TierScoreDecoder.decode(hit.getScore()) == null) {
                return String.format(Locale.ROOT, "hit [%s] has score [%s], which is not a tier-encoded reranker score", hit.getId(), hit.getScore());
            }
        }
        return null;
    }

    static String labelFor(List<String> levelNames, int level) {
        if (levelNames == null || level < 1 || level > levelNames.size()) {
            return null;
        }
        return levelNames.get(level - 1);
    }

    static void annotate(SearchHit hit, TierScore decoded, String label) {
        hit.setDocumentField(FIELD_TIER, new DocumentField(FIELD_TIER, List.<Object>of(decoded.tier().label())));
        hit.setDocumentField(FIELD_LEVEL, new DocumentField(FIELD_LEVEL, List.<Object>of(decoded.level())));
        if (label != null) {
            hit.setDocumentField(FIELD_LABEL, new DocumentField(FIELD_LABEL, List.<Object>of(label)));
        }
    }
}
