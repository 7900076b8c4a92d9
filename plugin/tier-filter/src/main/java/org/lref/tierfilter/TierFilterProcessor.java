package org.lref.tierfilter;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.ingest.ConfigurationUtils;
import org.opensearch.search.pipeline.AbstractProcessor;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@code lref_tier}: placed after {@code rerank}; drops hits below {@code min_tier}, annotates
 * kept hits with lref_tier/lref_level[/lref_label] fields and adds {@code ext.lref} to the response.
 * If rerank did not run (or produced foreign scores) the hits are returned unchanged.
 */
public final class TierFilterProcessor extends AbstractProcessor implements SearchResponseProcessor {

    public static final String TYPE = "lref_tier";
    static final String MIN_TIER = "min_tier";
    static final String LEVEL_NAMES = "level_names";
    static final int MAX_LEVELS = 9;

    private final Tier minTier;
    private final List<String> levelNames;

    TierFilterProcessor(String tag, String description, boolean ignoreFailure, Tier minTier, List<String> levelNames) {
        super(tag, description, ignoreFailure);
        this.minTier = minTier;
        this.levelNames = levelNames;
    }

    @Override
    public String getType() {
        return TYPE;
    }

    public Tier minTier() {
        return minTier;
    }

    public List<String> levelNames() {
        return levelNames;
    }

    @Override
    public SearchResponse processResponse(SearchRequest request, SearchResponse response) {
        return processResponse(request, response, null);
    }

    @Override
    public SearchResponse processResponse(SearchRequest request, SearchResponse response, PipelineProcessingContext context) {
        Tier effectiveMin = minTier;
        boolean filter = true;
        LrefRequestExt override = LrefRequestExt.find(request);
        if (override != null) {
            if (override.minTier() != null) {
                effectiveMin = override.minTier();
            }
            if (override.filter() != null) {
                filter = override.filter();
            }
        }
        HitSnapshot capture = null;
        if (context != null && context.getAttribute(HitSnapshot.CONTEXT_KEY) instanceof HitSnapshot snapshot) {
            capture = snapshot;
        }
        TierFilter.Outcome outcome = TierFilter.apply(
            response.getHits().getHits(),
            capture,
            response.getHits().getMaxScore(),
            effectiveMin,
            filter,
            levelNames
        );
        return ResponseRebuilder.rebuild(response, outcome.hits(), outcome.maxScore(), outcome.summary());
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
            String minTierName = ConfigurationUtils.readOptionalStringProperty(TYPE, tag, config, MIN_TIER);
            Tier minTier = Tier.MID;
            if (minTierName != null) {
                try {
                    minTier = Tier.parse(minTierName);
                } catch (IllegalArgumentException e) {
                    throw ConfigurationUtils.newConfigurationException(TYPE, tag, MIN_TIER, e.getMessage());
                }
            }
            List<String> levelNames = parseLevelNames(tag, config.remove(LEVEL_NAMES));
            return new TierFilterProcessor(tag, description, ignoreFailure, minTier, levelNames);
        }

        private static List<String> parseLevelNames(String tag, Object raw) {
            if (raw == null) {
                return null;
            }
            if (!(raw instanceof List<?> list)) {
                throw ConfigurationUtils.newConfigurationException(TYPE, tag, LEVEL_NAMES, "must be a list of strings, worst level first");
            }
            if (list.isEmpty() || list.size() > MAX_LEVELS) {
                throw ConfigurationUtils.newConfigurationException(
                    TYPE,
                    tag,
                    LEVEL_NAMES,
                    "must have 1 to " + MAX_LEVELS + " names (level numbers are 1..9), got " + list.size()
                );
            }
            List<String> names = new ArrayList<>(list.size());
            for (Object o : list) {
                if (!(o instanceof String s) || s.isBlank()) {
                    throw ConfigurationUtils.newConfigurationException(TYPE, tag, LEVEL_NAMES, "entries must be non-empty strings, got [" + o + "]");
                }
                names.add(s);
            }
            return List.copyOf(names);
        }
    }
}
