//! Trainable weights with a reproducible start: a `VarMap` (what candle's
//! optimisers train and what is saved as safetensors) whose variables are
//! created from a seeded generator instead of candle's unseeded one.
//!
//! Each tensor gets its own stream, seeded from the run's seed and the
//! tensor's name, so the same seed gives the same network whatever order the
//! layers are built in. Each layer's initialisation hint (Kaiming, uniform,
//! constant) is honoured as candle's own `Init::var` would.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

/// SplitMix64: small, fast, and good enough for weights and shuffles.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng { state: seed }
    }

    /// A stream for `name` under `seed` (FNV-1a of the name mixed with the seed).
    pub fn for_name(seed: u64, name: &str) -> SeededRng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        SeededRng::new(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Values for a tensor of `shape` drawn as `init` asks, from `rng`.
pub fn init_values(shape: &Shape, init: Init, rng: &mut SeededRng) -> Vec<f32> {
    let n = shape.elem_count();
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| (mean + stdev * rng.normal()) as f32)
            .collect(),
        Init::Uniform { lo, up } => (0..n)
            .map(|_| (lo + (up - lo) * rng.uniform()) as f32)
            .collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Normal => {
                    (0..n).map(|_| (std * rng.normal()) as f32).collect()
                }
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n)
                        .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
                        .collect()
                }
            }
        }
    }
}

/// A `VarMap` that creates missing variables from seeded streams.
#[derive(Clone)]
pub struct SeededVarMap {
    pub map: VarMap,
    pub seed: u64,
}

impl SeededVarMap {
    pub fn new(seed: u64) -> SeededVarMap {
        SeededVarMap {
            map: VarMap::new(),
            seed,
        }
    }

    /// A builder whose layers become trainable variables of this map.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// The variables an optimiser should update: all but batch norm's
    /// running statistics, which training updates by averaging, not by gradient.
    pub fn trainable(&self) -> Vec<Var> {
        let data = match self.map.data().lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut named: Vec<(&String, &Var)> = data
            .iter()
            .filter(|(name, _)| !name.ends_with("running_mean") && !name.ends_with("running_var"))
            .collect();
        // A fixed order, so the optimiser's state lines up run after run.
        named.sort_by(|a, b| a.0.cmp(b.0));
        named.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// Number of scalar parameters (trainable ones only).
    pub fn parameter_count(&self) -> usize {
        self.trainable().iter().map(|v| v.elem_count()).sum()
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = match self.map.data().lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let mut rng = SeededRng::for_name(self.seed, name);
        let values = init_values(&shape, init, &mut rng);
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        let data = match self.map.data().lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("new trainable variable '{name}' needs a shape"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_whatever_the_order() {
        let a = SeededVarMap::new(7);
        let b = SeededVarMap::new(7);
        let va = a.var_builder(DType::F32, &Device::Cpu);
        let vb = b.var_builder(DType::F32, &Device::Cpu);
        let a1 = candle_nn::linear(4, 3, va.pp("one")).unwrap();
        let a2 = candle_nn::linear(3, 2, va.pp("two")).unwrap();
        let b2 = candle_nn::linear(3, 2, vb.pp("two")).unwrap();
        let b1 = candle_nn::linear(4, 3, vb.pp("one")).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(a1.weight()), flat(b1.weight()));
        assert_eq!(flat(a2.weight()), flat(b2.weight()));
        let c = SeededVarMap::new(8);
        let c1 =
            candle_nn::linear(4, 3, c.var_builder(DType::F32, &Device::Cpu).pp("one")).unwrap();
        assert_ne!(flat(a1.weight()), flat(c1.weight()));
        assert_eq!(a.parameter_count(), 4 * 3 + 3 + 3 * 2 + 2);
    }

    #[test]
    fn running_statistics_are_not_trained() {
        let m = SeededVarMap::new(1);
        candle_nn::batch_norm(5, 1e-5, m.var_builder(DType::F32, &Device::Cpu).pp("bn")).unwrap();
        assert_eq!(m.trainable().len(), 2, "weight and bias only");
        assert_eq!(m.map.all_vars().len(), 4);
    }

    #[test]
    fn shuffle_is_a_permutation_and_reproducible() {
        let mut v: Vec<usize> = (0..100).collect();
        SeededRng::new(3).shuffle(&mut v);
        let mut w: Vec<usize> = (0..100).collect();
        SeededRng::new(3).shuffle(&mut w);
        assert_eq!(v, w);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
