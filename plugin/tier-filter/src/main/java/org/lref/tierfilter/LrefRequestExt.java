package org.lref.tierfilter;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.core.common.ParsingException;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.core.xcontent.XContentParser;
import org.opensearch.search.SearchExtBuilder;

import java.io.IOException;
import java.util.Objects;

/**
 * Per-request override: {@code "ext": {"lref": {"min_tier": "Bad", "filter": false}}}.
 * Both keys are optional; absent keys fall back to the processor config.
 */
public final class LrefRequestExt extends SearchExtBuilder {

    public static final String NAME = "lref";
    static final String MIN_TIER = "min_tier";
    static final String FILTER = "filter";

    private final Tier minTier;
    private final Boolean filter;

    public LrefRequestExt(Tier minTier, Boolean filter) {
        this.minTier = minTier;
        this.filter = filter;
    }

    public LrefRequestExt(StreamInput in) throws IOException {
        String tier = in.readOptionalString();
        this.minTier = tier == null ? null : Tier.parse(tier);
        this.filter = in.readOptionalBoolean();
    }

    /** Null when unset. */
    public Tier minTier() {
        return minTier;
    }

    /** Null when unset. */
    public Boolean filter() {
        return filter;
    }

    /** The lref ext of the request, or null. */
    public static LrefRequestExt find(SearchRequest request) {
        if (request == null || request.source() == null || request.source().ext() == null) {
            return null;
        }
        for (SearchExtBuilder ext : request.source().ext()) {
            if (ext instanceof LrefRequestExt lref) {
                return lref;
            }
        }
        return null;
    }

    /** Called with the parser on the value of "lref"; must consume it entirely. */
    public static LrefRequestExt parse(XContentParser parser) throws IOException {
        if (parser.currentToken() != XContentParser.Token.START_OBJECT) {
            throw new ParsingException(parser.getTokenLocation(), "[ext.lref] must be an object, got [" + parser.currentToken() + "]");
        }
        Tier minTier = null;
        Boolean filter = null;
        XContentParser.Token token;
        while ((token = parser.nextToken()) != XContentParser.Token.END_OBJECT) {
            if (token != XContentParser.Token.FIELD_NAME) {
                throw new ParsingException(parser.getTokenLocation(), "[ext.lref] unexpected token [" + token + "]");
            }
            String field = parser.currentName();
            token = parser.nextToken();
            switch (field) {
                case MIN_TIER -> {
                    if (token != XContentParser.Token.VALUE_STRING) {
                        throw new ParsingException(parser.getTokenLocation(), "[ext.lref.min_tier] must be one of [Good, Mid, Bad]");
                    }
                    try {
                        minTier = Tier.parse(parser.text());
                    } catch (IllegalArgumentException e) {
                        throw new ParsingException(parser.getTokenLocation(), "[ext.lref.min_tier] " + e.getMessage());
                    }
                }
                case FILTER -> {
                    if (token != XContentParser.Token.VALUE_BOOLEAN) {
                        throw new ParsingException(parser.getTokenLocation(), "[ext.lref.filter] must be a boolean");
                    }
                    filter = parser.booleanValue();
                }
                default -> throw new ParsingException(
                    parser.getTokenLocation(),
                    "[ext.lref] unknown key [" + field + "]; supported keys: [" + MIN_TIER + ", " + FILTER + "]"
                );
            }
        }
        return new LrefRequestExt(minTier, filter);
    }

    @Override
    public String getWriteableName() {
        return NAME;
    }

    @Override
    public void writeTo(StreamOutput out) throws IOException {
        out.writeOptionalString(minTier == null ? null : minTier.label());
        out.writeOptionalBoolean(filter);
    }

    @Override
    public XContentBuilder toXContent(XContentBuilder builder, Params params) throws IOException {
        builder.startObject(NAME);
        if (minTier != null) {
            builder.field(MIN_TIER, minTier.label());
        }
        if (filter != null) {
            builder.field(FILTER, filter.booleanValue());
        }
        return builder.endObject();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LrefRequestExt other && minTier == other.minTier && Objects.equals(filter, other.filter);
    }

    @Override
    public int hashCode() {
        return Objects.hash(NAME, minTier, filter);
    }
}
