//! The op-count energy proxy: MACs by precision × energy per MAC, plus bytes moved × energy per
//! byte, from Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014
//! (45 nm, 0.9 V). Absolute joules from it are not a measurement of any real chip (newer nodes
//! are several times cheaper per operation); it ranks variants by the work they imply and is
//! labelled `model`.

use serde::{Deserialize, Serialize};

/// Work of one inference, by operand precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpCounts {
    /// 32-bit float multiply-accumulates.
    pub macs_f32: u64,
    /// 16-bit float multiply-accumulates.
    pub macs_f16: u64,
    /// 8-bit integer multiplies with 32-bit accumulation.
    pub macs_i8: u64,
    /// 4-bit integer multiplies with 32-bit accumulation.
    pub macs_i4: u64,
    /// 1-bit (XNOR-popcount) multiply-accumulates, counted per bit pair.
    pub macs_binary: u64,
    /// Bytes read from DRAM (the weights, for a model larger than the caches).
    pub dram_bytes: u64,
    /// Bytes read from on-chip cache.
    pub cache_bytes: u64,
}

/// Energy per operation and per byte, picojoules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyTable {
    /// One f32 MAC.
    pub mac_f32_pj: f64,
    /// One f16 MAC.
    pub mac_f16_pj: f64,
    /// One i8 × i8 MAC into i32.
    pub mac_i8_pj: f64,
    /// One i4 × i4 MAC into i32.
    pub mac_i4_pj: f64,
    /// One binary MAC (XNOR and its share of the popcount).
    pub mac_binary_pj: f64,
    /// One byte from DRAM.
    pub dram_byte_pj: f64,
    /// One byte from cache.
    pub cache_byte_pj: f64,
}

impl EnergyTable {
    /// Horowitz ISSCC 2014, 45 nm. A MAC is one multiply plus one add at the accumulator's
    /// width: f32 3.7 + 0.9 = 4.6 pJ; f16 1.1 + 0.4 = 1.5 pJ; i8 0.2 (8-bit multiply) + 0.1
    /// (32-bit add) = 0.3 pJ. Below 8 bits this proxy extrapolates, since the paper stops at 8:
    /// a multiplier's energy grows with the square of its width (its partial-product array) and
    /// an adder's linearly, so a 4-bit multiply is 0.2 × (4/8)² = 0.05 pJ (+ 0.1 pJ 32-bit
    /// accumulate = 0.15 pJ), a 1-bit multiply (XNOR) 0.2 / 64 ≈ 0.0031 pJ and its popcount
    /// share one 1-bit add, 0.03 / 8 ≈ 0.0038 pJ (together 0.0069 pJ). Memory: DRAM 640 pJ
    /// per 32-bit word (the paper's 1.3–2.6 nJ per 64 bits) = 160 pJ/byte; an 8 KB cache
    /// 10 pJ per 64-bit access = 1.25 pJ/byte.
    pub const HOROWITZ_45NM: EnergyTable = EnergyTable {
        mac_f32_pj: 4.6,
        mac_f16_pj: 1.5,
        mac_i8_pj: 0.3,
        mac_i4_pj: 0.15,
        mac_binary_pj: 0.2 / 64.0 + 0.03 / 8.0,
        dram_byte_pj: 160.0,
        cache_byte_pj: 1.25,
    };
}

impl Default for EnergyTable {
    fn default() -> Self {
        Self::HOROWITZ_45NM
    }
}

impl OpCounts {
    /// Joules these counts cost by `table`.
    pub fn joules(&self, table: &EnergyTable) -> f64 {
        let pj = self.macs_f32 as f64 * table.mac_f32_pj
            + self.macs_f16 as f64 * table.mac_f16_pj
            + self.macs_i8 as f64 * table.mac_i8_pj
            + self.macs_i4 as f64 * table.mac_i4_pj
            + self.macs_binary as f64 * table.mac_binary_pj
            + self.dram_bytes as f64 * table.dram_byte_pj
            + self.cache_bytes as f64 * table.cache_byte_pj;
        pj * 1e-12
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horowitz_energies_by_hand() {
        let t = EnergyTable::HOROWITZ_45NM;
        // A 784×30 f32 layer: 23,520 MACs × 4.6 pJ = 108.192 nJ, plus its 94,080 weight bytes
        // from DRAM × 160 pJ = 15.0528 µJ.
        let f32_layer = OpCounts {
            macs_f32: 23_520,
            dram_bytes: 94_080,
            ..OpCounts::default()
        };
        assert!((f32_layer.joules(&t) - (108.192e-9 + 15.0528e-6)).abs() < 1e-15);
        // The same layer in int8: 23,520 × 0.3 pJ + 23,520 bytes × 160 pJ.
        let i8_layer = OpCounts {
            macs_i8: 23_520,
            dram_bytes: 23_520,
            ..OpCounts::default()
        };
        assert!((i8_layer.joules(&t) - (7.056e-9 + 3.7632e-6)).abs() < 1e-15);
        let one = |c: OpCounts| c.joules(&t) * 1e12;
        let binary = one(OpCounts {
            macs_binary: 1,
            ..OpCounts::default()
        });
        assert!((binary - 0.006875).abs() < 1e-12);
        assert!(
            one(OpCounts {
                macs_i4: 1,
                ..OpCounts::default()
            }) < one(OpCounts {
                macs_i8: 1,
                ..OpCounts::default()
            })
        );
        assert!(
            (one(OpCounts {
                cache_bytes: 8,
                ..OpCounts::default()
            }) - 10.0)
                .abs()
                < 1e-9
        );
    }
}
