"""The BiLSTM-CRF backend: word2vec-initialised word embeddings, a character CNN for shape and
casing, one bidirectional LSTM layer and a CRF decoded with Viterbi. A CPU firehose tier: no
subword encoder, a few hundred thousand multiply-adds per word.

Layout of a model directory: ``config.json`` (``tweetner.architecture == "bilstm-crf"``, sizes,
tags), ``vocab.json`` (words and characters by id) and ``model.safetensors``.
"""
from tagger.backends.bilstm_crf.inference import BiLstmCrfTagger

__all__ = ["BiLstmCrfTagger"]
