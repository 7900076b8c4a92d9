package org.lref.tierfilter;

/** A decoded reranker score: tier plus level number (1 = worst level of the scheme). */
public record TierScore(Tier tier, int level) {
}
