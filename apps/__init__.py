"""Client apps above the engine and the reranker: the offline audit (`lref audit`) and the demo
store (`lref demo`)."""
