"""Model backends behind the one tagger interface (tagger.loading picks one from a directory's config).

span-marker lives in tagger.inference (the default model); this package holds the others:
Hugging Face token classification and the BiLSTM-CRF.
"""
