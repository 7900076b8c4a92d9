package org.lref.tierfilter;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.search.pipeline.AbstractProcessor;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.util.Map;

/**
 * {@code lref_capture}: placed before {@code rerank}; snapshots (index, id, score) of the hits
 * into the request's PipelineProcessingContext so lref_tier can tell whether rerank ran.
 */
public final class CaptureHitsProcessor extends AbstractProcessor implements SearchResponseProcessor {

    public static final String TYPE = "lref_capture";

    CaptureHitsProcessor(String tag, String description, boolean ignoreFailure) {
        super(tag, description, ignoreFailure);
    }

    @Override
    public String getType() {
        return TYPE;
    }

    @Override
    public SearchResponse processResponse(SearchRequest request, SearchResponse response) {
        // Without a context there is nowhere to store the snapshot; lref_tier then relies on decoding alone.
        return response;
    }

    @Override
    public SearchResponse processResponse(SearchRequest request, SearchResponse response, PipelineProcessingContext context) {
        if (context != null && response != null && response.getHits() != null) {
            context.setAttribute(HitSnapshot.CONTEXT_KEY, HitSnapshot.of(response.getHits().getHits()));
        }
        return response;
    }

    public static final class Factory implements Processor.Factory<SearchResponseProcessor> {
        @Override
        public SearchResponseProcessor create(
            Map<String, Processor.Factory<SearchResponseProcessor>> processorFactories,
            String tag,
            String description,
            boolean ignoreFailure,
            Map<String, Object> config,
            Processor.PipelineContext pipelineContext
        ) {
            return new CaptureHitsProcessor(tag, description, ignoreFailure);
        }
    }
}
