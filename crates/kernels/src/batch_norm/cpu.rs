//! The CPU loops of batch norm's passes, in f32 over contiguous values
//! (the ops read and write the tensors' own types); sums in f64.

use super::ops::Geometry;

/// `(Σa·m, Σa·m·b)` per channel (`b` = `a·m` when absent, `m` = 1 when no mask).
pub(super) fn sums(g: &Geometry, a: &[f32], b: Option<&[f32]>, mask: Option<&[f32]>) -> Vec<f32> {
    let mut sums = vec![0f64; 2 * g.channels];
    for (i, &va) in a.iter().enumerate() {
        let va = if mask.is_some_and(|m| m[i] <= 0.0) {
            0.0
        } else {
            va
        };
        let c = g.channel(i);
        sums[c] += f64::from(va);
        sums[g.channels + c] += f64::from(va * b.map_or(va, |b| b[i]));
    }
    sums.into_iter().map(|s| s as f32).collect()
}

/// `x·scale + shift`, zeroed where the mask is not positive, then ReLU.
pub(super) fn affine(
    g: &Geometry,
    x: Vec<f32>,
    (scale, shift, residual): (&[f32], Option<&[f32]>, Option<&[f32]>),
    mask: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    x.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let c = g.channel(i);
            let mut v = v * scale[c] + shift.map_or(0.0, |s| s[c]) + residual.map_or(0.0, |r| r[i]);
            if mask.is_some_and(|m| m[i] <= 0.0) {
                v = 0.0;
            }
            if relu {
                v = v.max(0.0);
            }
            v
        })
        .collect()
}

/// `(stats [4·C], dot [2·C])` → `(A, B, C)` `[3·C]`: the input gradient
/// `dx = A·dy + B·x + C`.
pub(super) fn coefficients(stats: &[f32], dot: &[f32], count: f32, eps: f32) -> Vec<f32> {
    let channels = dot.len() / 2;
    let mut coef = vec![0f32; 3 * channels];
    for c in 0..channels {
        let (scale, mean, var) = (stats[c], stats[2 * channels + c], stats[3 * channels + c]);
        let inv = 1.0 / (var + eps).sqrt();
        let s1 = dot[c];
        let s2 = inv * (dot[channels + c] - mean * s1);
        let b = -scale * inv * s2 / count;
        coef[c] = scale;
        coef[channels + c] = b;
        coef[2 * channels + c] = -scale * s1 / count - b * mean;
    }
    coef
}

/// `A·dy + B·x + C` per channel, from `coef` `[3·C]`.
pub(super) fn bn_dx(g: &Geometry, dy: Vec<f32>, x: &[f32], coef: &[f32]) -> Vec<f32> {
    let n = g.channels;
    dy.into_iter()
        .enumerate()
        .map(|(i, dy)| {
            let c = g.channel(i);
            coef[c] * dy + coef[n + c] * x[i] + coef[2 * n + c]
        })
        .collect()
}

/// Per channel: mean, biased variance, and 1/√(var + ε) from the sums.
fn moments(sums: &[f32], c: usize, channels: usize, count: f32, eps: f32) -> (f32, f32, f32, f32) {
    let mean = sums[c] / count;
    let raw_var = sums[channels + c] / count - mean * mean;
    let var = raw_var.max(0.0);
    (mean, raw_var, var, 1.0 / (var + eps).sqrt())
}

/// `(sums [2·C], γ, β)` → `[scale | shift | mean | biased var]` `[4·C]`.
pub(super) fn finalize(
    (count, eps): (f32, f32),
    sums: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> Vec<f32> {
    let channels = gamma.len();
    let mut out = vec![0f32; 4 * channels];
    for c in 0..channels {
        let (mean, _, var, inv) = moments(sums, c, channels, count, eps);
        let scale = gamma[c] * inv;
        out[c] = scale;
        out[channels + c] = beta[c] - mean * scale;
        out[2 * channels + c] = mean;
        out[3 * channels + c] = var;
    }
    out
}

/// `(sums [2·C], γ, grad)` → `[dΣx | dΣx² | dγ | dβ]` `[4·C]`; `grad` is
/// `(dshift, dscale)` when `from_dot`, else `(dscale, dshift, …)`.
pub(super) fn finalize_grad(
    (count, eps): (f32, f32),
    from_dot: bool,
    sums: &[f32],
    gamma: &[f32],
    grad: &[f32],
) -> Vec<f32> {
    let channels = gamma.len();
    let mut out = vec![0f32; 4 * channels];
    for c in 0..channels {
        let (mean, raw_var, _, inv) = moments(sums, c, channels, count, eps);
        let (g_scale, g_shift) = if from_dot {
            (grad[channels + c], grad[c])
        } else {
            (grad[c], grad[channels + c])
        };
        let g = gamma[c];
        // scale = γ·inv, shift = β − mean·γ·inv, inv = (var + ε)^(−1/2),
        // var = Σx²/n − mean², mean = Σx/n.
        let d_inv = g_scale * g - g_shift * mean * g;
        let d_var = if raw_var > 0.0 {
            -0.5 * d_inv * inv * inv * inv
        } else {
            0.0
        };
        let d_mean = -g_shift * g * inv - 2.0 * mean * d_var;
        out[c] = d_mean / count;
        out[channels + c] = d_var / count;
        out[2 * channels + c] = g_scale * inv - g_shift * mean * inv;
        out[3 * channels + c] = g_shift;
    }
    out
}

/// `(1 − momentum)·running + momentum·unbias·stat`.
pub(super) fn running(running: &[f32], stat: &[f32], momentum: f32, unbias: f32) -> Vec<f32> {
    running
        .iter()
        .zip(stat)
        .map(|(r, s)| (1.0 - momentum) * r + momentum * s * unbias)
        .collect()
}
