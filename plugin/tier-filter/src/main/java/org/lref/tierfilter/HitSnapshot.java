package org.lref.tierfilter;

import org.opensearch.search.SearchHit;

import java.util.Objects;

/**
 * Copy of (index, id, score) of each hit, in order. Values are copied because the rerank
 * processor mutates the SearchHit objects in place.
 */
public final class HitSnapshot {

    /** PipelineProcessingContext attribute under which lref_capture stores its snapshot. */
    public static final String CONTEXT_KEY = "lref_tier_filter.captured_hits";

    private final String[] indices;
    private final String[] ids;
    private final float[] scores;

    private HitSnapshot(String[] indices, String[] ids, float[] scores) {
        this.indices = indices;
        this.ids = ids;
        this.scores = scores;
    }

    public static HitSnapshot of(SearchHit[] hits) {
        String[] indices = new String[hits.length];
        String[] ids = new String[hits.length];
        float[] scores = new float[hits.length];
        for (int i = 0; i < hits.length; i++) {
            indices[i] = hits[i].getIndex();
            ids[i] = hits[i].getId();
            scores[i] = hits[i].getScore();
        }
        return new HitSnapshot(indices, ids, scores);
    }

    public int size() {
        return ids.length;
    }

    /** True when the hits have exactly the captured (index, id, score) sequence. */
    public boolean matches(SearchHit[] hits) {
        if (hits.length != ids.length) {
            return false;
        }
        for (int i = 0; i < hits.length; i++) {
            SearchHit hit = hits[i];
            // Bitwise compare so NaN == NaN (unscored hits) counts as unchanged.
            if (Float.floatToIntBits(hit.getScore()) != Float.floatToIntBits(scores[i])
                || !Objects.equals(hit.getId(), ids[i])
                || !Objects.equals(hit.getIndex(), indices[i])) {
                return false;
            }
        }
        return true;
    }
}
