package org.lref.tierfilter;

import org.apache.lucene.search.TotalHits;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.action.search.SearchResponseSections;
import org.opensearch.action.search.ShardSearchFailure;
import org.opensearch.search.SearchHit;
import org.opensearch.search.SearchHits;

import java.util.HashMap;

/** Builders for plain SearchHit/SearchResponse objects (no OpenSearch test framework). */
final class TestHits {

    private TestHits() {}

    static SearchHit hit(String id, float score) {
        SearchHit hit = new SearchHit(id.hashCode() & 0xffff, id, new HashMap<>(), new HashMap<>());
        hit.score(score);
        return hit;
    }

    static SearchHit[] hits(Object... idScorePairs) {
        SearchHit[] out = new SearchHit[idScorePairs.length / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = hit((String) idScorePairs[2 * i], ((Number) idScorePairs[2 * i + 1]).floatValue());
        }
        return out;
    }

    static SearchResponse response(SearchHit... hits) {
        float max = Float.NaN;
        for (SearchHit h : hits) {
            if (Float.isNaN(max) || h.getScore() > max) {
                max = h.getScore();
            }
        }
        SearchHits searchHits = new SearchHits(hits, new TotalHits(hits.length + 100, TotalHits.Relation.EQUAL_TO), max);
        SearchResponseSections sections = new SearchResponseSections(searchHits, null, null, false, null, null, 1);
        return new SearchResponse(sections, null, 1, 1, 0, 12, ShardSearchFailure.EMPTY_ARRAY, SearchResponse.Clusters.EMPTY);
    }
}
