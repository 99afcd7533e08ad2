//! The HTTP batch daemon (`uploader serve`); see issue #5.
