package org.lref.tierfilter;

import org.junit.jupiter.api.Test;
import org.opensearch.search.SearchHit;

import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TierFilterTest {

    static final List<String> FOUR = List.of("Irrelevant", "Mismatch", "Related", "Excellent");

    static SearchHit[] reranked() {
        return TestHits.hits("g", 2.00014f, "m", 1.00122f, "b1", 0.00311f, "b2", 0.00201f);
    }

    static List<String> ids(SearchHit[] hits) {
        return Arrays.stream(hits).map(SearchHit::getId).toList();
    }

    @Test
    void dropsBelowMinTierKeepsOrderAndAnnotates() {
        TierFilter.Outcome out = TierFilter.apply(reranked(), null, 2.00014f, Tier.MID, true, FOUR);
        assertEquals(List.of("g", "m"), ids(out.hits()));
        assertEquals(2.00014f, out.maxScore());
        SearchHit g = out.hits()[0];
        assertEquals("Good", g.field("lref_tier").getValue());
        assertEquals(4, (int) g.field("lref_level").getValue());
        assertEquals("Excellent", g.field("lref_label").getValue());
        assertEquals("Mismatch", out.hits()[1].field("lref_label").getValue());

        LrefResponseExt s = out.summary();
        assertTrue(s.reranked());
        assertNull(s.reason());
        assertEquals(2, s.kept());
        assertEquals(List.of("b1", "b2"), s.dropped().stream().map(DroppedHit::id).toList());
        assertEquals(new DroppedHit(null, "b1", 0.00311f, Tier.BAD, 1, "Irrelevant"), s.dropped().get(0));
        assertEquals(1, s.tiers().get(Tier.GOOD));
        assertEquals(1, s.tiers().get(Tier.MID));
        assertEquals(2, s.tiers().get(Tier.BAD));
    }

    @Test
    void minTierGoodDropsMidToo() {
        TierFilter.Outcome out = TierFilter.apply(reranked(), null, 2.00014f, Tier.GOOD, true, null);
        assertEquals(List.of("g"), ids(out.hits()));
        assertNull(out.hits()[0].field("lref_label"));
        assertEquals(3, out.summary().dropped().size());
    }

    @Test
    void minTierBadKeepsAllAndAnnotates() {
        SearchHit[] in = reranked();
        TierFilter.Outcome out = TierFilter.apply(in, null, 2.00014f, Tier.BAD, true, FOUR);
        assertSame(in, out.hits());
        assertEquals(4, out.summary().kept());
        assertEquals("Bad", out.hits()[3].field("lref_tier").getValue());
    }

    @Test
    void filterFalseAnnotatesWithoutDropping() {
        TierFilter.Outcome out = TierFilter.apply(reranked(), null, 2.00014f, Tier.GOOD, false, FOUR);
        assertEquals(List.of("g", "m", "b1", "b2"), ids(out.hits()));
        assertEquals("Irrelevant", out.hits()[2].field("lref_label").getValue());
        assertTrue(out.summary().dropped().isEmpty());
        assertFalse(out.summary().filter());
        assertEquals(2, out.summary().tiers().get(Tier.BAD));
    }

    @Test
    void allDroppedGivesNaNMaxScore() {
        SearchHit[] in = TestHits.hits("b1", 0.00311f, "b2", 0.00201f);
        TierFilter.Outcome out = TierFilter.apply(in, null, 0.00311f, Tier.MID, true, null);
        assertEquals(0, out.hits().length);
        assertTrue(Float.isNaN(out.maxScore()));
        assertEquals(0, out.summary().kept());
    }

    @Test
    void captureMatchingHitsMeansRerankDidNotRun() {
        // Even tier-shaped scores are left alone when they equal the pre-rerank snapshot.
        SearchHit[] in = reranked();
        HitSnapshot capture = HitSnapshot.of(in);
        TierFilter.Outcome out = TierFilter.apply(in, capture, 2.00014f, Tier.MID, true, FOUR);
        assertSame(in, out.hits());
        assertEquals(2.00014f, out.maxScore());
        assertFalse(out.summary().reranked());
        assertEquals(TierFilter.REASON_UNCHANGED, out.summary().reason());
        assertEquals(4, out.summary().kept());
        assertNull(in[0].field("lref_tier"));
    }

    @Test
    void captureWithChangedScoresMeansReranked() {
        SearchHit[] in = TestHits.hits("b1", 7.5f, "g", 6.1f, "m", 3.3f);
        HitSnapshot capture = HitSnapshot.of(in);
        // What rerank does: rescore in place, then re-sort.
        in[0].score(0.00311f);
        in[1].score(2.00014f);
        in[2].score(1.00122f);
        SearchHit[] after = { in[1], in[2], in[0] };
        TierFilter.Outcome out = TierFilter.apply(after, capture, 2.00014f, Tier.MID, true, null);
        assertTrue(out.summary().reranked());
        assertEquals(List.of("g", "m"), ids(out.hits()));
    }

    @Test
    void sameScoresInDifferentOrderAreNotTheCapture() {
        SearchHit[] in = TestHits.hits("a", 1.00122f, "b", 1.00122f);
        HitSnapshot capture = HitSnapshot.of(in);
        SearchHit[] swapped = { in[1], in[0] };
        assertTrue(TierFilter.apply(swapped, capture, 1.00122f, Tier.MID, true, null).summary().reranked());
    }

    @Test
    void foreignScoreMeansNotReranked() {
        SearchHit[] in = TestHits.hits("x", 7.31f, "b", 0.00311f);
        TierFilter.Outcome out = TierFilter.apply(in, null, 7.31f, Tier.MID, true, null);
        assertSame(in, out.hits());
        assertFalse(out.summary().reranked());
        assertNotNull(out.summary().reason());
        assertTrue(out.summary().reason().contains("[x]"), out.summary().reason());
        assertTrue(out.summary().dropped().isEmpty());
    }

    @Test
    void nanScoreMeansNotReranked() {
        SearchHit[] in = TestHits.hits("g", 2.00014f, "u", Float.NaN);
        assertFalse(TierFilter.apply(in, null, 2.00014f, Tier.MID, true, null).summary().reranked());
    }

    @Test
    void emptyHits() {
        TierFilter.Outcome out = TierFilter.apply(new SearchHit[0], null, Float.NaN, Tier.MID, true, null);
        assertTrue(out.summary().reranked());
        assertEquals(0, out.summary().kept());
        // With a capture of the (empty) hits, rerank is known not to have changed anything.
        assertFalse(TierFilter.apply(new SearchHit[0], HitSnapshot.of(new SearchHit[0]), Float.NaN, Tier.MID, true, null).summary().reranked());
    }

    @Test
    void levelBeyondNamesHasNoLabel() {
        SearchHit[] in = TestHits.hits("g", 2.00019f);
        TierFilter.Outcome out = TierFilter.apply(in, null, 2.00019f, Tier.MID, true, FOUR);
        assertEquals(9, (int) out.hits()[0].field("lref_level").getValue());
        assertNull(out.hits()[0].field("lref_label"));
    }
}
