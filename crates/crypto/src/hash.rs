//! SHA-256.

use aws_lc_rs::digest;

/// SHA-256 of the concatenation of `parts`.
#[must_use]
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    to_array(ctx.finish().as_ref())
}

/// Copies a 32-byte library output into an array (the libraries return slices).
pub(crate) fn to_array(b: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    for (o, i) in out.iter_mut().zip(b) {
        *o = *i;
    }
    out
}
