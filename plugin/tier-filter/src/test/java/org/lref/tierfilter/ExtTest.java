package org.lref.tierfilter;

import org.junit.jupiter.api.Test;
import org.opensearch.common.io.stream.BytesStreamOutput;
import org.opensearch.common.xcontent.json.JsonXContent;
import org.opensearch.core.common.ParsingException;
import org.opensearch.core.common.Strings;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.xcontent.DeprecationHandler;
import org.opensearch.core.xcontent.MediaTypeRegistry;
import org.opensearch.core.xcontent.NamedXContentRegistry;
import org.opensearch.core.xcontent.ToXContentObject;
import org.opensearch.core.xcontent.XContentBuilder;
import org.opensearch.core.xcontent.XContentParser;

import java.io.IOException;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExtTest {

    /** Positions the parser on the value of "lref", as SearchSourceBuilder does before calling the ext parser. */
    static LrefRequestExt parse(String lrefValueJson) throws IOException {
        String json = "{\"lref\":" + lrefValueJson + ",\"after\":1}";
        try (XContentParser parser = JsonXContent.jsonXContent.createParser(NamedXContentRegistry.EMPTY, DeprecationHandler.THROW_UNSUPPORTED_OPERATION, json)) {
            parser.nextToken();
            parser.nextToken();
            parser.nextToken();
            LrefRequestExt ext = LrefRequestExt.parse(parser);
            // Parser must be left on the END_OBJECT of the lref section.
            assertEquals(XContentParser.Token.FIELD_NAME, parser.nextToken());
            assertEquals("after", parser.currentName());
            return ext;
        }
    }

    @Test
    void parsesRequestExt() throws IOException {
        LrefRequestExt ext = parse("{\"min_tier\":\"Bad\"}");
        assertEquals(Tier.BAD, ext.minTier());
        assertNull(ext.filter());
        ext = parse("{\"filter\":false}");
        assertNull(ext.minTier());
        assertEquals(Boolean.FALSE, ext.filter());
        ext = parse("{}");
        assertNull(ext.minTier());
    }

    @Test
    void rejectsBadRequestExt() {
        ParsingException e = assertThrows(ParsingException.class, () -> parse("{\"min_teir\":\"Bad\"}"));
        assertTrue(e.getMessage().contains("unknown key [min_teir]"), e.getMessage());
        e = assertThrows(ParsingException.class, () -> parse("{\"min_tier\":\"Great\"}"));
        assertTrue(e.getMessage().contains("unknown tier [Great]"), e.getMessage());
        e = assertThrows(ParsingException.class, () -> parse("{\"filter\":\"no\"}"));
        assertTrue(e.getMessage().contains("must be a boolean"), e.getMessage());
        assertThrows(ParsingException.class, () -> parse("\"Bad\""));
    }

    @Test
    void requestExtRoundTrips() throws IOException {
        LrefRequestExt ext = new LrefRequestExt(Tier.GOOD, false);
        BytesStreamOutput out = new BytesStreamOutput();
        ext.writeTo(out);
        try (StreamInput in = out.bytes().streamInput()) {
            assertEquals(ext, new LrefRequestExt(in));
        }
        assertEquals("{\"lref\":{\"min_tier\":\"Good\",\"filter\":false}}", Strings.toString(MediaTypeRegistry.JSON, wrap(ext::toXContent)));
    }

    @Test
    void responseExtRoundTrips() throws IOException {
        LrefResponseExt ext = new LrefResponseExt(
            true,
            null,
            Tier.MID,
            true,
            3,
            List.of(new DroppedHit("idx", "d1", 0.00311f, Tier.BAD, 1, "Irrelevant"), new DroppedHit(null, "d2", 0.00201f, Tier.BAD, 1, null)),
            Map.of(Tier.GOOD, 2, Tier.MID, 1, Tier.BAD, 2)
        );
        BytesStreamOutput out = new BytesStreamOutput();
        ext.writeTo(out);
        try (StreamInput in = out.bytes().streamInput()) {
            assertEquals(ext, new LrefResponseExt(in));
        }
        assertEquals(
            "{\"lref\":{\"reranked\":true,\"min_tier\":\"Mid\",\"filter\":true,\"kept\":3,\"dropped\":["
                + "{\"_index\":\"idx\",\"_id\":\"d1\",\"_score\":0.00311,\"tier\":\"Bad\",\"level\":1,\"label\":\"Irrelevant\"},"
                + "{\"_id\":\"d2\",\"_score\":0.00201,\"tier\":\"Bad\",\"level\":1}],"
                + "\"tiers\":{\"Good\":2,\"Mid\":1,\"Bad\":2}}}",
            Strings.toString(MediaTypeRegistry.JSON, wrap(ext::toXContent))
        );
    }

    interface Fragment {
        XContentBuilder write(XContentBuilder b, ToXContentObject.Params p) throws IOException;
    }

    static ToXContentObject wrap(Fragment f) {
        return (b, p) -> {
            b.startObject();
            f.write(b, p);
            return b.endObject();
        };
    }
}
