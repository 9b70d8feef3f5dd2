"""talkingface: identity-preserving talking-head generation built on MetaPortrait."""

__version__ = "0.1.0"
