package org.lref.tierfilter;

import org.junit.jupiter.api.Test;
import org.opensearch.OpenSearchParseException;
import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.core.common.Strings;
import org.opensearch.core.xcontent.MediaTypeRegistry;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.builder.SearchSourceBuilder;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ProcessorTest {

    static TierFilterProcessor tier(Map<String, Object> config) throws Exception {
        Map<String, Object> mutable = new HashMap<>(config);
        SearchResponseProcessor p = new TierFilterProcessor.Factory().create(Map.of(), "t", null, false, mutable, null);
        assertTrue(mutable.isEmpty(), "factory must consume its keys");
        return (TierFilterProcessor) p;
    }

    static SearchRequest request(SearchExtBuilder... exts) {
        SearchSourceBuilder source = new SearchSourceBuilder();
        source.ext(new ArrayList<>(List.of(exts)));
        return new SearchRequest().source(source);
    }

    static LrefResponseExt ext(SearchResponse r) {
        List<SearchExtBuilder> exts = r.getInternalResponse().getSearchExtBuilders();
        return exts.stream().filter(e -> e instanceof LrefResponseExt).map(e -> (LrefResponseExt) e).findFirst().orElseThrow();
    }

    @Test
    void factoryDefaultsAndConfig() throws Exception {
        assertEquals(Tier.MID, tier(Map.of()).minTier());
        assertNull(tier(Map.of()).levelNames());
        TierFilterProcessor p = tier(Map.of("min_tier", "Good", "level_names", List.of("Irrelevant", "Mismatch", "Related", "Excellent")));
        assertEquals(Tier.GOOD, p.minTier());
        assertEquals(4, p.levelNames().size());
        assertEquals("lref_tier", p.getType());
    }

    @Test
    void factoryRejectsBadConfig() {
        OpenSearchParseException e = assertThrows(OpenSearchParseException.class, () -> tier(Map.of("min_tier", "Great")));
        assertTrue(e.getMessage().contains("unknown tier [Great]"), e.getMessage());
        e = assertThrows(OpenSearchParseException.class, () -> tier(Map.of("level_names", "Irrelevant")));
        assertTrue(e.getMessage().contains("must be a list"), e.getMessage());
        e = assertThrows(OpenSearchParseException.class, () -> tier(Map.of("level_names", List.of("1", "2", "3", "4", "5", "6", "7", "8", "9", "10"))));
        assertTrue(e.getMessage().contains("1 to 9 names"), e.getMessage());
        e = assertThrows(OpenSearchParseException.class, () -> tier(Map.of("level_names", List.of("a", 3))));
        assertTrue(e.getMessage().contains("non-empty strings"), e.getMessage());
        assertThrows(OpenSearchParseException.class, () -> tier(Map.of("min_tier", 2)));
    }

    @Test
    void captureThenTierWithoutRerankLeavesHitsUnchanged() throws Exception {
        SearchResponse in = TestHits.response(TestHits.hits("g", 2.00014f, "b", 0.00311f));
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        SearchResponseProcessor capture = new CaptureHitsProcessor.Factory().create(Map.of(), null, null, false, new HashMap<>(), null);
        SearchResponse afterCapture = capture.processResponse(new SearchRequest(), in, ctx);
        assertSame(in, afterCapture);
        assertInstanceOf(HitSnapshot.class, ctx.getAttribute(HitSnapshot.CONTEXT_KEY));

        SearchResponse out = tier(Map.of()).processResponse(new SearchRequest(), afterCapture, ctx);
        assertSame(in.getHits(), out.getHits());
        assertFalse(ext(out).reranked());
        assertEquals(2, ext(out).kept());
    }

    @Test
    void captureThenRerankThenTierFilters() throws Exception {
        SearchResponse in = TestHits.response(TestHits.hits("b", 9.0f, "g", 8.0f));
        PipelineProcessingContext ctx = new PipelineProcessingContext();
        new CaptureHitsProcessor.Factory().create(Map.of(), null, null, false, new HashMap<>(), null).processResponse(new SearchRequest(), in, ctx);
        // Simulated rerank: same SearchHit objects, new scores, re-sorted.
        in.getHits().getHits()[0].score(0.00311f);
        in.getHits().getHits()[1].score(2.00014f);
        SearchResponse reranked = TestHits.response(in.getHits().getHits()[1], in.getHits().getHits()[0]);

        SearchResponse out = tier(Map.of()).processResponse(new SearchRequest(), reranked, ctx);
        assertEquals(1, out.getHits().getHits().length);
        assertEquals("g", out.getHits().getAt(0).getId());
        assertEquals(2.00014f, out.getHits().getMaxScore());
        assertEquals(reranked.getHits().getTotalHits(), out.getHits().getTotalHits());
        assertTrue(ext(out).reranked());
        assertEquals("b", ext(out).dropped().get(0).id());
    }

    @Test
    void requestExtOverridesMinTierAndFilter() throws Exception {
        TierFilterProcessor p = tier(Map.of("min_tier", "Good"));
        SearchResponse in = TestHits.response(TestHits.hits("g", 2.00014f, "m", 1.00122f, "b", 0.00311f));
        SearchResponse out = p.processResponse(request(new LrefRequestExt(Tier.BAD, null)), in, new PipelineProcessingContext());
        assertEquals(3, out.getHits().getHits().length);
        assertEquals(Tier.BAD, ext(out).minTier());

        in = TestHits.response(TestHits.hits("g", 2.00014f, "m", 1.00122f, "b", 0.00311f));
        out = p.processResponse(request(new LrefRequestExt(null, false)), in, new PipelineProcessingContext());
        assertEquals(3, out.getHits().getHits().length);
        assertEquals("Mid", out.getHits().getAt(1).field("lref_tier").getValue());
        assertFalse(ext(out).filter());
        assertEquals(Tier.GOOD, ext(out).minTier());

        in = TestHits.response(TestHits.hits("g", 2.00014f, "m", 1.00122f, "b", 0.00311f));
        out = p.processResponse(request(), in, null);
        assertEquals(1, out.getHits().getHits().length);
    }

    @Test
    void renderedJsonShape() throws Exception {
        TierFilterProcessor p = tier(Map.of("level_names", List.of("Irrelevant", "Mismatch", "Related", "Excellent")));
        SearchResponse out = p.processResponse(
            new SearchRequest(),
            TestHits.response(TestHits.hits("g", 2.00014f, "b", 0.00311f)),
            new PipelineProcessingContext()
        );
        String json = Strings.toString(MediaTypeRegistry.JSON, out);
        assertTrue(
            json.contains("{\"_id\":\"g\",\"_score\":2.00014,\"fields\":{\"lref_tier\":[\"Good\"],\"lref_level\":[4],\"lref_label\":[\"Excellent\"]}}"),
            json
        );
        assertTrue(
            json.contains(
                "\"ext\":{\"lref\":{\"reranked\":true,\"min_tier\":\"Mid\",\"filter\":true,\"kept\":1,"
                    + "\"dropped\":[{\"_id\":\"b\",\"_score\":0.00311,\"tier\":\"Bad\",\"level\":1,\"label\":\"Irrelevant\"}],"
                    + "\"tiers\":{\"Good\":1,\"Mid\":0,\"Bad\":1}}}"
            ),
            json
        );
        assertTrue(json.contains("\"total\":{\"value\":102,\"relation\":\"eq\"}"), json);
        assertTrue(json.contains("\"max_score\":2.00014"), json);
        assertFalse(json.contains("\"profile\""), json);
    }

    @Test
    void secondTierProcessorReplacesSummary() throws Exception {
        TierFilterProcessor p = tier(Map.of());
        SearchResponse once = p.processResponse(new SearchRequest(), TestHits.response(TestHits.hits("g", 2.00014f)), null);
        SearchResponse twice = p.processResponse(new SearchRequest(), once, null);
        assertEquals(1, twice.getInternalResponse().getSearchExtBuilders().size());
    }
}
