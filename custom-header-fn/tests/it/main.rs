//! Integration tests, in one binary so the SDK is linked once: the handler against a real moto
//! server, the PreconditionFailed retry against a mocked client (moto does not enforce ETags),
//! and the built `bootstrap` through the real Lambda runtime loop of `cargo lambda watch`.

mod mock;
mod moto;
mod runtime;
mod support;
