"""Engine side of lref: the ML Commons connector + search pipeline installer, and the Java
tier-filter plugin (plugin/tier-filter) that drops and annotates hits inside OpenSearch."""
