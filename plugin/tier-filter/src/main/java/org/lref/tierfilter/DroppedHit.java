package org.lref.tierfilter;

import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;
import org.opensearch.core.common.io.stream.Writeable;
import org.opensearch.core.xcontent.ToXContentObject;
import org.opensearch.core.xcontent.XContentBuilder;

import java.io.IOException;

/** A hit removed by lref_tier, reported in the response ext for offline audits. */
public record DroppedHit(String index, String id, float score, Tier tier, int level, String label)
    implements
        Writeable,
        ToXContentObject {

    public static DroppedHit readFrom(StreamInput in) throws IOException {
        return new DroppedHit(
            in.readOptionalString(),
            in.readOptionalString(),
            in.readFloat(),
            in.readEnum(Tier.class),
            in.readVInt(),
            in.readOptionalString()
        );
    }

    @Override
    public void writeTo(StreamOutput out) throws IOException {
        out.writeOptionalString(index);
        out.writeOptionalString(id);
        out.writeFloat(score);
        out.writeEnum(tier);
        out.writeVInt(level);
        out.writeOptionalString(label);
    }

    @Override
    public XContentBuilder toXContent(XContentBuilder builder, Params params) throws IOException {
        builder.startObject();
        if (index != null) {
            builder.field("_index", index);
        }
        builder.field("_id", id);
        builder.field("_score", score);
        builder.field("tier", tier.label());
        builder.field("level", level);
        if (label != null) {
            builder.field("label", label);
        }
        return builder.endObject();
    }
}
