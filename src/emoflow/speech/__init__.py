"""Audio (speech) emotion: emotion2vec through FunASR."""
