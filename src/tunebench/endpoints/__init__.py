"""A client for OpenAI-compatible endpoints, with retries, concurrency and a disk cache of responses.

Used by the models entry `openai:MODEL@URL` (a black-box contestant) and by the `openai` teacher.
"""
