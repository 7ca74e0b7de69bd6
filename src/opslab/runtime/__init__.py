"""The embedded platform: its components, their supervisor, and the up/down/status lifecycle.

(Not named `platform`: the standard library has a module of that name.)
"""
