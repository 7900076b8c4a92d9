"""A real single-node OpenSearch from Maven Central, and the JSON definitions we install into it."""
