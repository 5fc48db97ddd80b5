//! Energy of a timed loop, from the best source the machine offers, each figure labelled with
//! where it came from.
//!
//! The chain, best first:
//! 1. `measured`: RAPL, hwmon and INA3221 sensors found under a sysfs root ([`sensors`]), read
//!    by a sampler thread during the timed loop: counters summed wrap-aware, instantaneous
//!    power integrated over time.
//! 2. `estimated`: CPU-seconds of the loop (the process CPU clock: all threads, the sampler's
//!    own time taken out) × watts per active core of a board description
//!    ([`estimate::BoardPower`]).
//! 3. `model`: operation counts × energy per operation ([`opcount`], Horowitz ISSCC 2014).
//!
//! [`EnergyReport::headline`] is the first link that produced a figure; every figure that
//! could be made is in [`EnergyReport::readings`], and what could not, with the reason, in
//! [`EnergyReport::skipped`].

pub mod cpu_time;
pub mod estimate;
pub mod opcount;
mod sampler;
pub mod sensors;

use super::latency::{
    measure_observed, LatencyConfig, LatencyError, LatencyReport, TimedLoopObserver,
};
use super::MeasureError;
use cpu_time::{cpu_seconds, Scope};
use estimate::BoardPower;
use opcount::{EnergyTable, OpCounts};
use sampler::Sampler;
use sensors::{Sensor, SensorFamily};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where an energy figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergySource {
    /// Read from a hardware sensor.
    Measured,
    /// CPU time × a board's watts per core.
    Estimated,
    /// Operation counts × energy per operation.
    Model,
}

/// One energy figure for the metered loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    /// The link of the chain it came from.
    pub source: EnergySource,
    /// The sensor family, for measured figures.
    pub sensor: Option<SensorFamily>,
    /// What exactly was read or assumed, e.g. `rapl intel-rapl:0 (package-0)` or
    /// `cpu time × raspberry-pi-4 (0.93 W per active core)`.
    pub label: String,
    /// Joules over the loop.
    pub joules: f64,
    /// Seconds the figure covers (for a sensor, its first to last sample).
    pub seconds: f64,
    /// joules / seconds.
    pub average_watts: f64,
    /// joules / inferences.
    pub joules_per_inference: f64,
}

/// Every energy figure of one metered loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReport {
    /// Inferences (runs × batch) the loop made.
    pub inferences: u64,
    /// Wall-clock seconds from the start to the end of metering.
    pub seconds: f64,
    /// The best figure: the first link of the chain that gave one; `None` if none did.
    pub headline: Option<EnergyReading>,
    /// Every figure made: each sensor, the measured headline sum, the estimate, the model.
    pub readings: Vec<EnergyReading>,
    /// Sensors and links that gave nothing (or a partial figure), and why.
    pub skipped: Vec<String>,
}

/// Settings of the energy chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerConfig {
    /// Root under which `sys/class/powercap`, `sys/class/hwmon` and `sys/bus/iio` are looked
    /// for: `/` on a real machine.
    pub sysfs_root: PathBuf,
    /// Interval of the sampler thread.
    pub sample_interval: Duration,
    /// Board description for the CPU-time estimate; `None` skips that link.
    pub board: Option<BoardPower>,
    /// Work of one inference for the op-count model; `None` skips that link.
    pub op_counts: Option<OpCounts>,
    /// Energy per operation for the op-count model.
    pub energy_table: EnergyTable,
}

impl PowerConfig {
    /// Sensors under `sysfs_root`, the board guessed from the same root
    /// ([`BoardPower::detect`]), no op counts, a 20 ms sampling interval.
    pub fn new(sysfs_root: impl Into<PathBuf>) -> Self {
        let sysfs_root = sysfs_root.into();
        Self {
            board: BoardPower::detect(&sysfs_root),
            sysfs_root,
            sample_interval: Duration::from_millis(20),
            op_counts: None,
            energy_table: EnergyTable::HOROWITZ_45NM,
        }
    }
}

/// Meters energy between [`EnergyProbe::start`] and [`EnergyProbe::stop`]; also a
/// [`TimedLoopObserver`], so that [`measure_observed`] starts and stops it around the timed
/// runs.
#[derive(Debug)]
pub struct EnergyProbe {
    config: PowerConfig,
    sensors: Vec<Sensor>,
    skipped: Vec<String>,
    running: Option<Running>,
    finished: Option<Finished>,
}

#[derive(Debug)]
struct Running {
    sampler: Option<Sampler>,
    start: Instant,
    cpu_start: Result<f64, String>,
}

#[derive(Debug)]
struct Finished {
    seconds: f64,
    sensors: Vec<sampler::Integrated>,
    cpu_seconds: Result<f64, String>,
}

impl EnergyProbe {
    /// Finds the sensors under `config.sysfs_root` (a slow step kept out of the timed loop).
    pub fn new(config: PowerConfig) -> Self {
        let found = sensors::discover(&config.sysfs_root);
        Self {
            config,
            sensors: found.sensors,
            skipped: found.skipped,
            running: None,
            finished: None,
        }
    }

    /// The sensors found, in the order their readings are reported.
    pub fn sensors(&self) -> &[Sensor] {
        &self.sensors
    }

    /// Starts metering (takes first sensor samples, starts the sampler, reads CPU time).
    pub fn start(&mut self) {
        let sampler = (!self.sensors.is_empty())
            .then(|| Sampler::start(self.sensors.clone(), self.config.sample_interval));
        self.finished = None;
        self.running = Some(Running {
            sampler,
            start: Instant::now(),
            cpu_start: cpu_seconds(Scope::Process).map_err(|e| e.to_string()),
        });
    }

    /// Stops metering; does nothing if it was not started.
    pub fn stop(&mut self) {
        let Some(run) = self.running.take() else {
            return;
        };
        let cpu_end = cpu_seconds(Scope::Process).map_err(|e| e.to_string());
        let seconds = run.start.elapsed().as_secs_f64();
        let (sensors, sampler_cpu) = match run.sampler.map(Sampler::finish) {
            None => (Vec::new(), Some(0.0)),
            Some(Ok(done)) => done,
            Some(Err(why)) => {
                self.skipped.push(why);
                (Vec::new(), None)
            }
        };
        let cpu_seconds = match (run.cpu_start, cpu_end, sampler_cpu) {
            (Ok(a), Ok(b), Some(own)) => Ok((b - a - own).max(0.0)),
            (Ok(a), Ok(b), None) => Ok(b - a),
            (Err(e), _, _) | (_, Err(e), _) => Err(e),
        };
        self.finished = Some(Finished {
            seconds,
            sensors,
            cpu_seconds,
        });
    }

    /// The report of the last start–stop span for `inferences` inferences (at least 1).
    pub fn report(&self, inferences: u64) -> Result<EnergyReport, MeasureError> {
        let not_ready = |message: &str| MeasureError::Config {
            field: "energy probe",
            message: message.to_string(),
        };
        let done = self
            .finished
            .as_ref()
            .ok_or_else(|| not_ready("report asked before start and stop"))?;
        if inferences == 0 {
            return Err(not_ready("report needs at least one inference"));
        }
        let per = |joules: f64| joules / inferences as f64;
        let reading = |source, sensor, label: String, joules: f64, seconds: f64| EnergyReading {
            source,
            sensor,
            label,
            joules,
            seconds,
            average_watts: if seconds > 0.0 { joules / seconds } else { 0.0 },
            joules_per_inference: per(joules),
        };
        let mut skipped = self.skipped.clone();
        let mut readings = Vec::new();

        // 1. Measured: every sensor, then the headline sensors' sum.
        let mut headline_complete = true;
        let mut measured = Vec::new();
        for (sensor, got) in self.sensors.iter().zip(&done.sensors) {
            if let Some(why) = &got.first_error {
                skipped.push(format!("{} (some samples failed): {why}", sensor.label));
            }
            if got.samples < 2 || got.seconds <= 0.0 {
                skipped.push(format!("{}: fewer than two good samples", sensor.label));
                headline_complete &= !sensor.headline;
                continue;
            }
            let r = reading(
                EnergySource::Measured,
                Some(sensor.family),
                sensor.label.clone(),
                got.joules,
                got.seconds,
            );
            measured.push((sensor.headline, r));
        }
        let headline_parts: Vec<&EnergyReading> = measured
            .iter()
            .filter_map(|(is_headline, r)| is_headline.then_some(r))
            .collect();
        let summed = headline_parts.len() > 1;
        // All sensors are sampled at the same instants, so the parts share one span (the
        // longest, should a part have lost its last samples).
        let measured_headline = match headline_parts.as_slice() {
            _ if !headline_complete => None,
            [] => None,
            [one] => Some((*one).clone()),
            many => Some(reading(
                EnergySource::Measured,
                many[0].sensor,
                format!(
                    "sum of {}",
                    many.iter()
                        .map(|r| r.label.as_str())
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
                many.iter().map(|r| r.joules).sum(),
                many.iter().map(|r| r.seconds).fold(0.0, f64::max),
            )),
        };
        if self.sensors.is_empty() {
            skipped.push(format!(
                "measured: no RAPL, hwmon or INA3221 sensor readable under {}",
                self.config.sysfs_root.display()
            ));
        }
        readings.extend(measured.into_iter().map(|(_, r)| r));

        // 2. Estimated from CPU time.
        let estimated = match (&self.config.board, &done.cpu_seconds) {
            (Some(board), Ok(cpu)) => Some(reading(
                EnergySource::Estimated,
                None,
                format!(
                    "cpu time {cpu:.4} s × {} ({} W per active core)",
                    board.name, board.watts_per_active_core
                ),
                board.joules(*cpu),
                done.seconds,
            )),
            (None, _) => {
                skipped.push("estimated: no board description".into());
                None
            }
            (_, Err(e)) => {
                skipped.push(format!("estimated: cpu time unreadable: {e}"));
                None
            }
        };

        // 3. Op-count model.
        let modelled = match &self.config.op_counts {
            Some(ops) => Some(reading(
                EnergySource::Model,
                None,
                "op counts × Horowitz ISSCC 2014 45 nm energies".into(),
                ops.joules(&self.config.energy_table) * inferences as f64,
                done.seconds,
            )),
            None => {
                skipped.push("model: no op counts given".into());
                None
            }
        };

        let headline = measured_headline
            .clone()
            .or_else(|| estimated.clone())
            .or_else(|| modelled.clone());
        readings.extend(measured_headline.filter(|_| summed));
        readings.extend(estimated);
        readings.extend(modelled);
        Ok(EnergyReport {
            inferences,
            seconds: done.seconds,
            headline,
            readings,
            skipped,
        })
    }
}

impl TimedLoopObserver for EnergyProbe {
    fn started(&mut self) {
        self.start();
    }
    fn finished(&mut self) {
        self.stop();
    }
}

/// Times `work` as [`measure_observed`] does and meters the energy of the timed runs.
pub fn measure_with_energy<T, E>(
    latency: &LatencyConfig,
    power: &PowerConfig,
    work: impl FnMut() -> Result<T, E>,
) -> Result<(LatencyReport, EnergyReport), LatencyError<E>> {
    let mut probe = EnergyProbe::new(power.clone());
    let report = measure_observed(latency, &mut probe, work)?;
    let inferences = (report.runs as u64).saturating_mul(report.batch_size as u64);
    let energy = probe.report(inferences)?;
    Ok((report, energy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Writes `text` to `root/path` atomically (so the sampler never sees a half-written file).
    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let tmp = p.with_extension("tmp-write");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }

    fn config(root: &Path) -> PowerConfig {
        PowerConfig {
            sysfs_root: root.to_path_buf(),
            sample_interval: Duration::from_millis(5),
            board: None,
            op_counts: None,
            energy_table: EnergyTable::HOROWITZ_45NM,
        }
    }

    const MAX: u64 = 262_143_328_850;

    fn rapl_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let zone = |z: &str, name: &str, uj: u64| {
            put(r, &format!("sys/class/powercap/{z}/name"), name);
            put(
                r,
                &format!("sys/class/powercap/{z}/energy_uj"),
                &uj.to_string(),
            );
            put(
                r,
                &format!("sys/class/powercap/{z}/max_energy_range_uj"),
                &MAX.to_string(),
            );
        };
        zone("intel-rapl:0", "package-0", MAX - 1_000);
        zone("intel-rapl:0:0", "core", 10);
        zone("intel-rapl:1", "package-1", 7_000);
        zone("amd-rapl:0", "package", 50);
        // The control-type directory itself has no counter and is not a zone.
        put(r, "sys/class/powercap/intel-rapl/enabled", "1");
        // Unreadable: a directory where the counter should be, and a garbled counter.
        std::fs::create_dir_all(r.join("sys/class/powercap/intel-rapl:2/energy_uj")).unwrap();
        put(r, "sys/class/powercap/intel-rapl:2/name", "psys");
        put(r, "sys/class/powercap/intel-rapl:3/name", "package-3");
        put(r, "sys/class/powercap/intel-rapl:3/energy_uj", "garbage");
        dir
    }

    #[test]
    fn rapl_zones_are_found_marked_and_bad_ones_skipped() {
        let dir = rapl_tree();
        let found = sensors::discover(dir.path());
        let labels: Vec<(&str, bool)> = found
            .sensors
            .iter()
            .map(|s| (s.label.as_str(), s.headline))
            .collect();
        assert_eq!(
            labels,
            [
                ("rapl amd-rapl:0 (package)", true),
                ("rapl intel-rapl:0 (package-0)", true),
                ("rapl intel-rapl:0:0 (core)", false),
                ("rapl intel-rapl:1 (package-1)", true),
            ]
        );
        assert_eq!(found.skipped.len(), 2, "{:?}", found.skipped);
        assert!(found.skipped[0].starts_with("rapl intel-rapl:2 (psys): "));
        assert!(found.skipped[1].contains("`garbage` is not an unsigned integer"));
    }

    #[test]
    fn rapl_energy_survives_counter_wrap_around() {
        let dir = rapl_tree();
        let root = dir.path();
        let mut probe = EnergyProbe::new(config(root));
        probe.start();
        let p0 = "sys/class/powercap/intel-rapl:0/energy_uj";
        // Two wraps, each seen by the sampler (5 ms interval, 60 ms apart):
        // (MAX − (MAX − 1000)) + 500, then (MAX − 100 − 500), then 100 + 100.
        for v in [500, MAX - 100, 100] {
            std::thread::sleep(Duration::from_millis(60));
            put(root, p0, &v.to_string());
        }
        put(root, "sys/class/powercap/intel-rapl:1/energy_uj", "9000");
        std::thread::sleep(Duration::from_millis(30));
        probe.stop();
        let report = probe.report(10).unwrap();
        let expected_uj = 1_000 + 500 + (MAX - 600) + 200;
        let p0_reading = report
            .readings
            .iter()
            .find(|r| r.label == "rapl intel-rapl:0 (package-0)")
            .unwrap();
        assert!((p0_reading.joules - expected_uj as f64 * 1e-6).abs() < 1e-6);
        let head = report.headline.clone().unwrap();
        assert_eq!(head.source, EnergySource::Measured);
        assert_eq!(head.sensor, Some(SensorFamily::Rapl));
        assert_eq!(
            head.label,
            "sum of rapl amd-rapl:0 (package) + rapl intel-rapl:0 (package-0) + \
             rapl intel-rapl:1 (package-1)"
        );
        let total = (expected_uj + 2_000) as f64 * 1e-6;
        assert!((head.joules - total).abs() < 1e-6, "{head:?}");
        assert!((head.joules_per_inference - total / 10.0).abs() < 1e-7);
        assert!(head.seconds >= 0.2 && head.average_watts > 0.0);
        // The sum is listed too, after the four zones.
        assert_eq!(report.readings.len(), 5);
        assert!(report.skipped.iter().any(|s| s.contains("psys")));
    }

    #[test]
    fn rapl_wrap_without_a_range_is_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let p = "sys/class/powercap/intel-rapl:0/energy_uj";
        put(root, "sys/class/powercap/intel-rapl:0/name", "package-0");
        put(root, p, "5000");
        let mut probe = EnergyProbe::new(config(root));
        probe.start();
        std::thread::sleep(Duration::from_millis(30));
        put(root, p, "100");
        std::thread::sleep(Duration::from_millis(30));
        put(root, p, "400");
        std::thread::sleep(Duration::from_millis(30));
        probe.stop();
        let report = probe.report(1).unwrap();
        // The backwards step is dropped; 100 → 400 still counts.
        assert!(
            (report.readings[0].joules - 300e-6).abs() < 1e-12,
            "{report:?}"
        );
        assert!(report
            .skipped
            .iter()
            .any(|s| s.contains("counter went from 5000 to 100 µJ with no known wrap range")));
    }

    fn hwmon_tree(with_ina: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "sys/class/hwmon/hwmon0/name", "acpi_power");
        put(r, "sys/class/hwmon/hwmon0/power1_input", "5000000");
        put(r, "sys/class/hwmon/hwmon0/power1_label", "board");
        put(r, "sys/class/hwmon/hwmon0/power2_input", "not-a-number");
        put(r, "sys/class/hwmon/hwmon1/name", "amd_energy");
        put(r, "sys/class/hwmon/hwmon1/energy1_input", "1000000");
        put(r, "sys/class/hwmon/hwmon1/energy1_label", "Ecore000");
        put(r, "sys/class/hwmon/hwmon1/energy2_input", "4000000");
        put(r, "sys/class/hwmon/hwmon1/energy2_label", "Esocket0");
        if with_ina {
            put(r, "sys/class/hwmon/hwmon2/name", "ina3221");
            for (k, label, mv, ma) in [(1, "VDD_IN", 5000, 1000), (2, "VDD_CPU_GPU_CV", 5000, 400)]
            {
                put(r, &format!("sys/class/hwmon/hwmon2/in{k}_label"), label);
                put(
                    r,
                    &format!("sys/class/hwmon/hwmon2/in{k}_input"),
                    &mv.to_string(),
                );
                put(
                    r,
                    &format!("sys/class/hwmon/hwmon2/curr{k}_input"),
                    &ma.to_string(),
                );
            }
            // A voltage channel without a current is not a power rail.
            put(r, "sys/class/hwmon/hwmon2/in7_input", "5000");
        }
        dir
    }

    fn by_label<'a>(report: &'a EnergyReport, label: &str) -> &'a EnergyReading {
        report
            .readings
            .iter()
            .find(|r| r.label == label)
            .unwrap_or_else(|| panic!("no reading `{label}` in {report:#?}"))
    }

    #[test]
    fn hwmon_power_is_integrated_and_energy_counted() {
        let dir = hwmon_tree(false);
        let root = dir.path();
        let mut probe = EnergyProbe::new(config(root));
        assert_eq!(probe.sensors().len(), 3);
        probe.start();
        std::thread::sleep(Duration::from_millis(40));
        put(root, "sys/class/hwmon/hwmon1/energy2_input", "6500000");
        put(root, "sys/class/hwmon/hwmon1/energy1_input", "1500000");
        std::thread::sleep(Duration::from_millis(40));
        probe.stop();
        let report = probe.report(4).unwrap();
        // A constant 5 W, integrated by the trapezoidal rule, is 5 W × the sampled span.
        let power = by_label(&report, "hwmon hwmon0 (acpi_power) power1 board");
        assert_eq!(power.sensor, Some(SensorFamily::HwmonPower));
        assert!(power.seconds >= 0.08);
        assert!(
            (power.joules - 5.0 * power.seconds).abs() < 1e-9,
            "{power:?}"
        );
        assert!((power.average_watts - 5.0).abs() < 1e-9);
        let socket = by_label(&report, "hwmon hwmon1 (amd_energy) energy2 Esocket0");
        assert!((socket.joules - 2.5).abs() < 1e-12);
        // Energy counters outrank power inputs; the socket counter, not the core, is headline.
        let head = report.headline.unwrap();
        assert_eq!(head.label, "hwmon hwmon1 (amd_energy) energy2 Esocket0");
        assert!((head.joules - 2.5).abs() < 1e-12);
        assert!((head.joules_per_inference - 0.625).abs() < 1e-12);
        assert!(report
            .skipped
            .iter()
            .any(|s| s.starts_with("hwmon hwmon0 (acpi_power) power2: ")
                && s.contains("`not-a-number` is not a number")));
    }

    #[test]
    fn ina3221_hwmon_rails_use_the_board_input_as_headline() {
        let dir = hwmon_tree(true);
        let mut probe = EnergyProbe::new(config(dir.path()));
        probe.start();
        std::thread::sleep(Duration::from_millis(50));
        probe.stop();
        let report = probe.report(1).unwrap();
        let head = report.headline.clone().unwrap();
        assert_eq!(head.label, "ina3221 hwmon2 VDD_IN");
        assert_eq!(head.sensor, Some(SensorFamily::Ina3221));
        assert!((head.average_watts - 5.0).abs() < 1e-9, "{head:?}");
        let cpu = by_label(&report, "ina3221 hwmon2 VDD_CPU_GPU_CV");
        assert!((cpu.average_watts - 2.0).abs() < 1e-9);
        assert!(!report
            .readings
            .iter()
            .any(|r| r.label.contains("channel 7")));
    }

    #[test]
    fn ina3221_iio_rails_in_milliwatts() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let dev = "sys/bus/iio/devices/iio:device0";
        put(r, &format!("{dev}/name"), "ina3221x");
        put(r, &format!("{dev}/rail_name_0"), "POM_5V_IN");
        put(r, &format!("{dev}/in_power0_input"), "4000");
        put(r, &format!("{dev}/rail_name_1"), "POM_5V_CPU");
        put(r, &format!("{dev}/in_power1_input"), "1500");
        let mut probe = EnergyProbe::new(config(r));
        probe.start();
        std::thread::sleep(Duration::from_millis(30));
        put(r, &format!("{dev}/in_power0_input"), "6000");
        std::thread::sleep(Duration::from_millis(30));
        probe.stop();
        let report = probe.report(2).unwrap();
        let head = report.headline.clone().unwrap();
        assert_eq!(head.label, "ina3221 iio:device0 POM_5V_IN");
        // Between 4 W and 6 W on average, depending on when the step fell between samples.
        assert!(
            head.average_watts > 4.0 && head.average_watts < 6.0,
            "{head:?}"
        );
        let cpu = by_label(&report, "ina3221 iio:device0 POM_5V_CPU");
        assert!((cpu.average_watts - 1.5).abs() < 1e-9);
    }

    #[test]
    fn with_no_sensors_the_chain_falls_back_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.board = BoardPower::named("raspberry-pi-4");
        cfg.op_counts = Some(OpCounts {
            macs_i8: 1_000_000,
            ..OpCounts::default()
        });
        let mut probe = EnergyProbe::new(cfg.clone());
        assert!(probe.report(1).is_err(), "report before start must fail");
        probe.start();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(40) {
            std::hint::spin_loop();
        }
        probe.stop();
        let report = probe.report(5).unwrap();
        let head = report.headline.clone().unwrap();
        assert_eq!(head.source, EnergySource::Estimated);
        assert!(head.label.starts_with("cpu time "), "{}", head.label);
        assert!(head
            .label
            .ends_with("× raspberry-pi-4 (0.93 W per active core)"));
        assert!(head.joules > 0.0);
        assert!(report.skipped[0].starts_with("measured: no RAPL, hwmon or INA3221 sensor"));
        let model = report.readings.last().unwrap();
        assert_eq!(model.source, EnergySource::Model);
        // 5 inferences × 10^6 × 0.3 pJ.
        assert!((model.joules - 1.5e-6).abs() < 1e-15);
        assert!((model.joules_per_inference - 0.3e-6).abs() < 1e-15);

        cfg.board = None;
        let mut probe = EnergyProbe::new(cfg.clone());
        probe.start();
        probe.stop();
        let report = probe.report(5).unwrap();
        assert_eq!(report.headline.unwrap().source, EnergySource::Model);
        assert!(report
            .skipped
            .contains(&"estimated: no board description".to_string()));

        cfg.op_counts = None;
        let mut probe = EnergyProbe::new(cfg);
        probe.start();
        probe.stop();
        let report = probe.report(5).unwrap();
        assert!(report.headline.is_none() && report.readings.is_empty());
        assert_eq!(report.skipped.len(), 3);
    }

    #[test]
    fn this_machine_measures_a_timed_loop_with_some_source() {
        let latency = LatencyConfig {
            budget: crate::measure::latency::Budget::Runs(30),
            batch_size: 2,
            ..LatencyConfig::default()
        };
        let power = PowerConfig::new("/");
        let has_sensors = !EnergyProbe::new(power.clone()).sensors().is_empty();
        let (lat, energy) = measure_with_energy(&latency, &power, || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(1) {
                std::hint::spin_loop();
            }
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        assert_eq!(energy.inferences, 60);
        assert!(energy.seconds >= lat.loop_seconds * 0.9);
        match (&energy.headline, has_sensors, &power.board) {
            (Some(h), true, _) => assert_eq!(h.source, EnergySource::Measured),
            (Some(h), false, Some(_)) => assert_eq!(h.source, EnergySource::Estimated),
            (None, false, None) => {}
            other => panic!("unexpected chain outcome {other:?}"),
        }
        let json = serde_json::to_string(&energy).unwrap();
        assert!(json.contains("\"source\""));
    }
}
