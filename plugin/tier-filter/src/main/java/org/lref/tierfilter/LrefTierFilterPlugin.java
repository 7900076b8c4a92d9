package org.lref.tierfilter;

import org.opensearch.core.common.io.stream.NamedWriteableRegistry;
import org.opensearch.plugins.Plugin;
import org.opensearch.plugins.SearchPipelinePlugin;
import org.opensearch.plugins.SearchPlugin;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.util.List;
import java.util.Map;

/** Registers lref_capture, lref_tier, the request ext "lref" and the response ext's writeable. */
public class LrefTierFilterPlugin extends Plugin implements SearchPipelinePlugin, SearchPlugin {

    @Override
    public Map<String, Processor.Factory<SearchResponseProcessor>> getResponseProcessors(Parameters parameters) {
        return Map.of(
            CaptureHitsProcessor.TYPE,
            new CaptureHitsProcessor.Factory(),
            TierFilterProcessor.TYPE,
            new TierFilterProcessor.Factory()
        );
    }

    @Override
    public List<SearchExtSpec<?>> getSearchExts() {
        return List.of(new SearchExtSpec<>(LrefRequestExt.NAME, LrefRequestExt::new, LrefRequestExt::parse));
    }

    @Override
    public List<NamedWriteableRegistry.Entry> getNamedWriteables() {
        // Response ext only travels over the transport layer; it has no request-side parser.
        return List.of(new NamedWriteableRegistry.Entry(SearchExtBuilder.class, LrefResponseExt.WRITEABLE_NAME, LrefResponseExt::new));
    }
}
