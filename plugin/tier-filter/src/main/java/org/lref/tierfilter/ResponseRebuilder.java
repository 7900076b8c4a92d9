package org.lref.tierfilter;

import org.opensearch.action.search.SearchResponse;
import org.opensearch.action.search.SearchResponseSections;
import org.opensearch.search.SearchExtBuilder;
import org.opensearch.search.SearchHit;
import org.opensearch.search.SearchHits;
import org.opensearch.search.profile.ProfileShardResult;
import org.opensearch.search.profile.SearchProfileShardResults;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Copies a SearchResponse with new hits and an added/replaced lref response ext. */
final class ResponseRebuilder {

    private ResponseRebuilder() {}

    static SearchResponse rebuild(SearchResponse response, SearchHit[] hits, float maxScore, LrefResponseExt ext) {
        SearchHits oldHits = response.getHits();
        SearchHits newHits = (hits == oldHits.getHits() && Float.compare(maxScore, oldHits.getMaxScore()) == 0)
            ? oldHits
            : new SearchHits(
                hits,
                oldHits.getTotalHits(),
                maxScore,
                oldHits.getSortFields(),
                oldHits.getCollapseField(),
                oldHits.getCollapseValues()
            );

        SearchResponseSections internal = response.getInternalResponse();
        List<SearchExtBuilder> exts = new ArrayList<>();
        if (internal.getSearchExtBuilders() != null) {
            for (SearchExtBuilder b : internal.getSearchExtBuilders()) {
                if (!(b instanceof LrefResponseExt)) { // a second lref_tier replaces the first one's summary
                    exts.add(b);
                }
            }
        }
        exts.add(ext);

        Map<String, ProfileShardResult> profile = response.getProfileResults();
        // Pass null when not profiling; an empty object would render a spurious "profile" section.
        SearchProfileShardResults profileResults = (profile == null || profile.isEmpty()) ? null : new SearchProfileShardResults(profile);

        SearchResponseSections sections = new SearchResponseSections(
            newHits,
            response.getAggregations(),
            response.getSuggest(),
            response.isTimedOut(),
            response.isTerminatedEarly(),
            profileResults,
            response.getNumReducePhases(),
            exts,
            internal.getProcessorResult()
        );
        return new SearchResponse(
            sections,
            response.getScrollId(),
            response.getTotalShards(),
            response.getSuccessfulShards(),
            response.getSkippedShards(),
            response.getTook().millis(),
            response.getPhaseTook(),
            response.getShardFailures(),
            response.getClusters(),
            response.pointInTimeId()
        );
    }
}
