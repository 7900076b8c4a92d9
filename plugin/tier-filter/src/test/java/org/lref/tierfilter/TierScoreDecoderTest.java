package org.lref.tierfilter;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

class TierScoreDecoderTest {

    /** Same formula as the reranker service, cast to float32 like the rerank processor does. */
    static float encode(int tierRank, int orderKey, int level) {
        return (float) (tierRank + (orderKey * 10 + level) / 100000.0);
    }

    @ParameterizedTest
    @ValueSource(doubles = { 0.0, 1.0, 7.31, 2.5, 0.123456, -1.0, Double.NaN, 3.2, 3.0, Double.POSITIVE_INFINITY, 2.99999 + 0.000004 })
    void foreignScoresAreNotOurs(double score) {
        assertNull(TierScoreDecoder.decode(score));
    }

    @Test
    void foreignFloatScoresAreNotOurs() {
        assertNull(TierScoreDecoder.decode(Float.NaN));
        assertNull(TierScoreDecoder.decode(7.31f));
        assertNull(TierScoreDecoder.decode(1.0f));
    }

    @Test
    void decodesEncodedExamples() {
        assertEquals(new TierScore(Tier.GOOD, 4), TierScoreDecoder.decode(encode(2, 9998, 4)));
        assertEquals(new TierScore(Tier.BAD, 1), TierScoreDecoder.decode(encode(0, 17, 1)));
        assertEquals(new TierScore(Tier.GOOD, 4), TierScoreDecoder.decode(2.00014f));
        assertEquals(new TierScore(Tier.MID, 2), TierScoreDecoder.decode(1.00122f));
        assertEquals(new TierScore(Tier.BAD, 1), TierScoreDecoder.decode(0.00311f));
    }

    @Test
    void roundTripsEveryTierLevelAndManyOrderKeysThroughFloat32() {
        for (int tier = 0; tier <= 2; tier++) {
            for (int level = 1; level <= 9; level++) {
                for (int key = 0; key <= 9998; key += 7) {
                    TierScore d = TierScoreDecoder.decode(encode(tier, key, level));
                    assertEquals(new TierScore(Tier.fromRank(tier), level), d, "tier=" + tier + " key=" + key + " level=" + level);
                }
                assertEquals(new TierScore(Tier.fromRank(tier), level), TierScoreDecoder.decode(encode(tier, 9998, level)));
            }
        }
    }

    @Test
    void levelZeroIsRejected() {
        assertNull(TierScoreDecoder.decode(encode(1, 5, 0)));
    }

    @Test
    void tierParsing() {
        assertEquals(Tier.GOOD, Tier.parse("Good"));
        assertEquals(Tier.MID, Tier.parse("mid"));
        assertEquals(Tier.BAD, Tier.parse(" BAD "));
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> Tier.parse("Great"));
        assertEquals("unknown tier [Great]; expected one of [Good, Mid, Bad]", e.getMessage());
    }
}
