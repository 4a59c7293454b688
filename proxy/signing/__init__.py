"""SigV4 (pure), aws-chunked signing, and the sign-for-the-wire entry points."""
