"""The HTTP gateway: validates input, stores uploads, writes job rows, enqueues, answers.

It never runs a model. Research/triage only - not a medical device.
"""
