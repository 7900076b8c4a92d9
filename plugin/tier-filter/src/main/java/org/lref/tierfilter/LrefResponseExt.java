package org.lref.tierfilter;

import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.search.SearchExtBuilder;

import java.io.IOException;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Response section rendered as {@code "ext": {"lref": {...}}}. Its writeable name differs from
 * the request ext's because SearchSourceBuilder requires the request ext's name to equal its
 * JSON key, and both live in the SearchExtBuilder named-writeable category.
 */
public final class LrefResponseExt extends SearchExtBuilder {

    public static final String WRITEABLE_NAME = "lref_tier_result";
    public static final String JSON_KEY = "lref";

    private final boolean reranked;
    private final String reason;
    private final Tier minTier;
    private final boolean filter;
    private final int kept;
    private final List<DroppedHit> dropped;
    private final Map<Tier, Integer> tiers;

    public LrefResponseExt(
        boolean reranked,
        String reason,
        Tier minTier,
        boolean filter,
        int kept,
        List<DroppedHit> dropped,
        Map<Tier, Integer> tiers
    ) {
        this.reranked = reranked;
        this.reason = reason;
        this.minTier = Objects.requireNonNull(minTier);
        this.filter = filter;
        this.kept = kept;
        this.dropped = List.copyOf(dropped);
        EnumMap<Tier, Integer> counts = new EnumMap<>(Tier.class);
        for (Tier t : Tier.values()) {
            counts.put(t, tiers.getOrDefault(t, 0));
        }
        this.tiers = counts;
    }

    public LrefResponseExt(StreamInput in) throws IOException {
        this.reranked = in.readBoolean();
        this.reason = in.readOptionalString();
        this.minTier = in.readEnum(Tier.class);
        this.filter = in.readBoolean();
        this.kept = in.readVInt();
        this.dropped = in.readList(DroppedHit::readFrom);
        EnumMap<Tier, Integer> counts = new EnumMap<>(Tier.class);
        for (Tier t : Tier.values()) {
            counts.put(t, in.readVInt());
        }
        this.tiers = counts;
    }

    public boolean reranked() {
        return reranked;
    }

    public String reason() {
        return reason;
    }

    public Tier minTier() {
        return minTier;
    }

    public boolean filter() {
        return filter;
    }

    public int kept() {
        return kept;
    }

    public List<DroppedHit> dropped() {
        return dropped;
    }

    public Map<Tier, Integer> tiers() {
        return tiers;
    }

    @Override
    public String getWriteableName() {
        return WRITEABLE_NAME;
    }

    @Override
    public void writeTo(StreamOutput out) throws IOException {
        out.writeBoolean(reranked);
        out.writeOptionalString(reason);
        out.writeEnum(minTier);
        out.writeBoolean(filter);
        out.writeVInt(kept);
        out.writeList(dropped);
        for (Tier t : Tier.values()) {
            out.writeVInt(tiers.get(t));
        }
    }

    @Override
    public XContentBuilder toXContent(XContentBuilder builder, Params params) throws IOException {
        builder.startObject(JSON_KEY);
        builder.field("reranked", reranked);
        if (reason != null) {
            builder.field("reason", reason);
        }
        builder.field("min_tier", minTier.label());
        builder.field("filter", filter);
        builder.field("kept", kept);
        builder.startArray("dropped");
        for (DroppedHit d : dropped) {
            d.toXContent(builder, params);
        }
        builder.endArray();
        builder.startObject("tiers");
        // Best tier first, matching hit order.
        for (Tier t : new Tier[] { Tier.GOOD, Tier.MID, Tier.BAD }) {
            builder.field(t.label(), tiers.get(t).intValue());
        }
        builder.endObject();
        return builder.endObject();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LrefResponseExt other
            && reranked == other.reranked
            && filter == other.filter
            && kept == other.kept
            && minTier == other.minTier
            && Objects.equals(reason, other.reason)
            && dropped.equals(other.dropped)
            && tiers.equals(other.tiers);
    }

    @Override
    public int hashCode() {
        return Objects.hash(reranked, reason, minTier, filter, kept, dropped, tiers);
    }
}
