"""The tagger worker: the Faust app and agent that run the model library over the tweets topic."""
