package org.lref.tierfilter;

import java.util.Locale;

/** Relevance tier encoded in the integer part of a reranker score. */
public enum Tier {
    BAD("Bad"),
    MID("Mid"),
    GOOD("Good");

    private final String label;

    Tier(String label) {
        this.label = label;
    }

    /** Canonical name as used in configs and responses ("Good", "Mid", "Bad"). */
    public String label() {
        return label;
    }

    /** Integer part of the encoded score. */
    public int rank() {
        return ordinal();
    }

    public boolean isBelow(Tier other) {
        return rank() < other.rank();
    }

    public static Tier fromRank(int rank) {
        return values()[Math.min(Math.max(rank, 0), 2)];
    }

    /** Case-insensitive parse; throws IllegalArgumentException naming the allowed values. */
    public static Tier parse(String name) {
        if (name != null) {
            String trimmed = name.trim();
            for (Tier t : values()) {
                if (t.label.equalsIgnoreCase(trimmed)) {
                    return t;
                }
            }
        }
        throw new IllegalArgumentException(
            String.format(Locale.ROOT, "unknown tier [%s]; expected one of [Good, Mid, Bad]", name)
        );
    }

    @Override
    public String toString() {
        return label;
    }
}
