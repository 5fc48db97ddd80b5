//! Finding and reading the power and energy sensors a Linux machine exposes in sysfs, under a
//! root directory (normally `/`; tests build fake trees).
//!
//! * RAPL: `sys/class/powercap/<zone>/energy_uj` (µJ counter; Intel `intel-rapl:N[:M]` and AMD
//!   `amd-rapl:N` zones), wrapping at `max_energy_range_uj`.
//! * hwmon: `sys/class/hwmon/hwmonN/energyK_input` (µJ counter) and `powerK_input` (µW,
//!   instantaneous).
//! * INA3221 (Jetson boards): `sys/bus/iio/devices/iio:deviceN/in_powerK_input` (mW) with
//!   `rail_name_K`, or an hwmon device named `ina3221` with `inK_input` (mV), `currK_input` (mA)
//!   and `inK_label`.
//!
//! Each sensor is read once when found; one that cannot be read or parsed is skipped with a
//! note naming the file and the reason (RAPL counters are often readable by root only).
//!
//! Which sensors make the headline figure (so that nothing is counted twice): the INA3221 rail
//! that is the board input (a label ending in `_IN`, e.g. `VDD_IN`, `POM_5V_IN`) or else every
//! rail; else the top-level RAPL `package*` zones (sub-zones such as `core` and `dram` lie
//! inside or beside them) or else every top-level zone; else hwmon energy counters labelled
//! socket/package or else all of them; else every hwmon power input.

use super::super::{read_text, read_u64, MeasureError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The kind of hardware a measured reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorFamily {
    /// A Jetson INA3221 power monitor rail (board input or a sub-rail).
    Ina3221,
    /// An Intel or AMD RAPL energy counter (CPU package and its domains).
    Rapl,
    /// An hwmon energy counter.
    HwmonEnergy,
    /// An hwmon instantaneous power input, integrated over time.
    HwmonPower,
}

/// A reading of one sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// An energy counter, µJ.
    Counter(u64),
    /// Instantaneous power, watts.
    Watts(f64),
}

#[derive(Debug, Clone)]
enum Source {
    /// A µJ counter file, wrapping at `max_range_uj` when known.
    Counter {
        path: PathBuf,
        max_range_uj: Option<u64>,
    },
    /// A power file in units of `watts_per_unit` W.
    Power { path: PathBuf, watts_per_unit: f64 },
    /// Voltage (mV) and current (mA) files whose product is power.
    VoltsAmps { volts: PathBuf, amps: PathBuf },
}

/// One sensor found under the root.
#[derive(Debug, Clone)]
pub struct Sensor {
    /// Human-readable name with its origin, e.g. `rapl intel-rapl:0 (package-0)`.
    pub label: String,
    /// What kind of sensor it is.
    pub family: SensorFamily,
    /// Whether it counts towards the headline figure (see the module doc).
    pub headline: bool,
    source: Source,
}

impl Sensor {
    /// The wrap-around range of a counter, µJ, when known.
    pub(crate) fn max_range_uj(&self) -> Option<u64> {
        match self.source {
            Source::Counter { max_range_uj, .. } => max_range_uj,
            _ => None,
        }
    }

    /// Reads the sensor now.
    pub(crate) fn read(&self) -> Result<Value, MeasureError> {
        match &self.source {
            Source::Counter { path, .. } => read_u64(path).map(Value::Counter),
            Source::Power {
                path,
                watts_per_unit,
            } => Ok(Value::Watts(read_f64(path)? * watts_per_unit)),
            Source::VoltsAmps { volts, amps } => {
                Ok(Value::Watts(read_f64(volts)? * read_f64(amps)? * 1e-6))
            }
        }
    }
}

/// The sensors found under a root, and those that were found but could not be used.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Usable sensors, each read once successfully.
    pub sensors: Vec<Sensor>,
    /// One line per sensor or file that was skipped, naming it and saying why.
    pub skipped: Vec<String>,
}

/// Finds every power and energy sensor under `root` and marks the headline ones.
pub fn discover(root: &Path) -> Discovery {
    let mut found = Discovery::default();
    discover_rapl(root, &mut found);
    discover_hwmon(root, &mut found);
    discover_iio(root, &mut found);
    mark_headline(&mut found.sensors);
    found
}

fn read_f64(path: &Path) -> Result<f64, MeasureError> {
    let text = read_text(path)?;
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(MeasureError::Parse {
            path: path.to_path_buf(),
            field: "value".into(),
            message: format!("`{}` is not a number", text.trim()),
        }),
    }
}

/// Entries of `dir` whose file name starts with `prefix`, sorted by name; none if unreadable.
fn entries(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with(prefix).then(|| (name, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The contents of a small name/label file, trimmed; `None` when absent or unreadable.
fn read_name(path: &Path) -> Option<String> {
    read_text(path).ok().map(|s| s.trim().to_string())
}

/// Adds `sensor` if it reads successfully, else notes why not.
fn add(found: &mut Discovery, sensor: Sensor) {
    match sensor.read() {
        Ok(_) => found.sensors.push(sensor),
        Err(e) => found.skipped.push(format!("{}: {e}", sensor.label)),
    }
}

fn discover_rapl(root: &Path, found: &mut Discovery) {
    for (zone, dir) in entries(&root.join("sys/class/powercap"), "") {
        let energy = dir.join("energy_uj");
        if !(zone.contains("rapl") && energy.exists()) {
            continue;
        }
        let name = read_name(&dir.join("name")).unwrap_or_else(|| "unnamed".into());
        let range = dir.join("max_energy_range_uj");
        let max_range_uj = match read_u64(&range) {
            Ok(v) if v > 0 => Some(v),
            Ok(_) => None,
            Err(_) if !range.exists() => None,
            Err(e) => {
                found
                    .skipped
                    .push(format!("rapl {zone} ({name}) wrap range: {e}"));
                None
            }
        };
        add(
            found,
            Sensor {
                label: format!("rapl {zone} ({name})"),
                family: SensorFamily::Rapl,
                headline: false,
                source: Source::Counter {
                    path: energy,
                    max_range_uj,
                },
            },
        );
    }
}

/// Numbered attribute files `<prefix>K<suffix>` in `dir`, as (K, path), sorted by K.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = entries(dir, prefix)
        .into_iter()
        .filter_map(|(name, path)| {
            let k = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((k, path))
        })
        .collect();
    out.sort_by_key(|(k, _)| *k);
    out
}

fn discover_hwmon(root: &Path, found: &mut Discovery) {
    for (dev, dir) in entries(&root.join("sys/class/hwmon"), "hwmon") {
        let name = read_name(&dir.join("name")).unwrap_or_else(|| "unnamed".into());
        if name == "ina3221" {
            for (k, volts) in numbered(&dir, "in", "_input") {
                let amps = dir.join(format!("curr{k}_input"));
                if !amps.exists() {
                    continue;
                }
                let rail = read_name(&dir.join(format!("in{k}_label")))
                    .unwrap_or_else(|| format!("channel {k}"));
                let label = format!("ina3221 {dev} {rail}");
                add(
                    found,
                    Sensor {
                        label,
                        family: SensorFamily::Ina3221,
                        headline: false,
                        source: Source::VoltsAmps { volts, amps },
                    },
                );
            }
            continue;
        }
        let channel_label = |kind: &str, k: u32| {
            let own = read_name(&dir.join(format!("{kind}{k}_label")));
            format!(
                "hwmon {dev} ({name}) {kind}{k}{}",
                own.map(|l| format!(" {l}")).unwrap_or_default()
            )
        };
        for (k, path) in numbered(&dir, "energy", "_input") {
            let sensor = Sensor {
                label: channel_label("energy", k),
                family: SensorFamily::HwmonEnergy,
                headline: false,
                source: Source::Counter {
                    path,
                    max_range_uj: None,
                },
            };
            add(found, sensor);
        }
        for (k, path) in numbered(&dir, "power", "_input") {
            let sensor = Sensor {
                label: channel_label("power", k),
                family: SensorFamily::HwmonPower,
                headline: false,
                source: Source::Power {
                    path,
                    watts_per_unit: 1e-6,
                },
            };
            add(found, sensor);
        }
    }
}

fn discover_iio(root: &Path, found: &mut Discovery) {
    for (dev, dir) in entries(&root.join("sys/bus/iio/devices"), "iio:device") {
        for (k, path) in numbered(&dir, "in_power", "_input") {
            let rail = read_name(&dir.join(format!("rail_name_{k}")))
                .unwrap_or_else(|| format!("channel {k}"));
            let sensor = Sensor {
                label: format!("ina3221 {dev} {rail}"),
                family: SensorFamily::Ina3221,
                headline: false,
                source: Source::Power {
                    path,
                    watts_per_unit: 1e-3,
                },
            };
            add(found, sensor);
        }
    }
}

/// Whether `label`'s last word (the rail name) marks the board input rail.
fn is_input_rail(label: &str) -> bool {
    label
        .rsplit(' ')
        .next()
        .is_some_and(|rail| rail.to_ascii_uppercase().ends_with("_IN"))
}

/// Whether a RAPL label names a top-level zone (`intel-rapl:0`, not `intel-rapl:0:1`).
fn is_top_level_zone(label: &str) -> bool {
    label
        .split(' ')
        .nth(1)
        .is_some_and(|zone| zone.matches(':').count() == 1)
}

/// Marks the headline sensors of the first family present, by the rule in the module doc.
fn mark_headline(sensors: &mut [Sensor]) {
    let Some(family) = sensors.iter().map(|s| s.family).min() else {
        return;
    };
    let preferred: fn(&Sensor) -> bool = match family {
        SensorFamily::Ina3221 => |s| is_input_rail(&s.label),
        SensorFamily::Rapl => |s| is_top_level_zone(&s.label) && s.label.contains("(package"),
        SensorFamily::HwmonEnergy => |s| {
            let l = s.label.to_ascii_lowercase();
            l.contains("socket") || l.contains("package")
        },
        SensorFamily::HwmonPower => |_| true,
    };
    let fallback: fn(&Sensor) -> bool = match family {
        SensorFamily::Rapl => |s| is_top_level_zone(&s.label),
        _ => |_| true,
    };
    let any_preferred = sensors.iter().any(|s| s.family == family && preferred(s));
    for s in sensors.iter_mut().filter(|s| s.family == family) {
        s.headline = if any_preferred {
            preferred(s)
        } else {
            fallback(s)
        };
    }
}
