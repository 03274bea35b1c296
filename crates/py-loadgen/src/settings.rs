//! `TestSettings`: every field of LoadGen's, under the same Python names and
//! with the same defaults and type rules, over `loadgen::TestSettings`; and
//! `FromConfig`.

use crate::config;
use crate::enums;
use crate::values;
use loadgen::TestSettings;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

#[pyclass(name = "TestSettings", module = "mlperf_loadgen")]
#[derive(Clone, Default)]
pub struct PyTestSettings {
    pub inner: TestSettings,
}

macro_rules! get {
    (scenario, $py:expr, $v:expr) => {
        enums::scenario_to($py, $v).map(Bound::unbind)
    };
    (mode, $py:expr, $v:expr) => {
        enums::mode_to($py, $v).map(Bound::unbind)
    };
    ($kind:ident, $py:expr, $v:expr) => {
        $v.into_py_any($py)
    };
}

macro_rules! set {
    (scenario, $value:expr, $name:expr) => {
        enums::scenario_from($value, $name)
    };
    (mode, $value:expr, $name:expr) => {
        enums::mode_from($value, $name)
    };
    (unsigned, $value:expr, $name:expr) => {
        values::unsigned($value, $name)
    };
    (signed32, $value:expr, $name:expr) => {
        values::signed32($value, $name)
    };
    (double, $value:expr, $name:expr) => {
        values::double($value, $name)
    };
    (flag, $value:expr, $name:expr) => {
        values::flag($value, $name)
    };
}

/// One getter and one setter per field: `kind python_name / setter => field`.
macro_rules! settings_class {
    ($($kind:ident $py_name:ident / $setter:ident => $field:ident;)*) => {
        #[pymethods]
        impl PyTestSettings {
            #[new]
            fn new() -> Self {
                PyTestSettings::default()
            }

            /// Reads a conf file as LoadGen's `FromConfig` does and returns
            /// its code (0, -2 for a missing file, -22 for a bad value);
            /// anything it skipped or refused is also a Python warning.
            #[pyo3(name = "FromConfig", signature = (path, model, scenario, conf_type = 1))]
            fn read_config(
                &mut self,
                py: Python<'_>,
                path: &Bound<'_, PyAny>,
                model: &str,
                scenario: &str,
                conf_type: i64,
            ) -> PyResult<i32> {
                let path = values::path_text(path, "path")?;
                config::from_config(py, &mut self.inner, &path, model, scenario, conf_type)
            }

            $(
                #[getter($py_name)]
                fn $py_name(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                    get!($kind, py, self.inner.$field)
                }

                #[setter($py_name)]
                fn $setter(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
                    self.inner.$field = set!($kind, value, stringify!($py_name))?;
                    Ok(())
                }
            )*
        }
    };
}

settings_class! {
    scenario scenario / set_scenario => scenario;
    mode mode / set_mode => mode;
    double single_stream_expected_latency_ns / set_single_stream_expected_latency_ns => single_stream_expected_latency_ns;
    double single_stream_target_latency_percentile / set_single_stream_target_latency_percentile => single_stream_target_latency_percentile;
    double multi_stream_expected_latency_ns / set_multi_stream_expected_latency_ns => multi_stream_expected_latency_ns;
    double multi_stream_target_latency_percentile / set_multi_stream_target_latency_percentile => multi_stream_target_latency_percentile;
    unsigned multi_stream_samples_per_query / set_multi_stream_samples_per_query => multi_stream_samples_per_query;
    double server_target_qps / set_server_target_qps => server_target_qps;
    unsigned server_target_latency_ns / set_server_target_latency_ns => server_target_latency_ns;
    double server_target_latency_percentile / set_server_target_latency_percentile => server_target_latency_percentile;
    flag server_coalesce_queries / set_server_coalesce_queries => server_coalesce_queries;
    signed32 server_find_peak_qps_decimals_of_precision / set_server_find_peak_qps_decimals_of_precision => server_find_peak_qps_decimals_of_precision;
    double server_find_peak_qps_boundary_step_size / set_server_find_peak_qps_boundary_step_size => server_find_peak_qps_boundary_step_size;
    unsigned server_max_async_queries / set_server_max_async_queries => server_max_async_queries;
    unsigned server_num_issue_query_threads / set_server_num_issue_query_threads => server_num_issue_query_threads;
    double offline_expected_qps / set_offline_expected_qps => offline_expected_qps;
    flag sample_concatenate_permutation / set_sample_concatenate_permutation => sample_concatenate_permutation;
    unsigned min_duration_ms / set_min_duration_ms => min_duration_ms;
    unsigned max_duration_ms / set_max_duration_ms => max_duration_ms;
    unsigned min_query_count / set_min_query_count => min_query_count;
    unsigned max_query_count / set_max_query_count => max_query_count;
    unsigned qsl_rng_seed / set_qsl_rng_seed => qsl_rng_seed;
    unsigned sample_index_rng_seed / set_sample_index_rng_seed => sample_index_rng_seed;
    unsigned schedule_rng_seed / set_schedule_rng_seed => schedule_rng_seed;
    unsigned accuracy_log_rng_seed / set_accuracy_log_rng_seed => accuracy_log_rng_seed;
    double accuracy_log_probability / set_accuracy_log_probability => accuracy_log_probability;
    unsigned accuracy_log_sampling_target / set_accuracy_log_sampling_target => accuracy_log_sampling_target;
    flag test05 / set_test05 => test05;
    unsigned test05_qsl_rng_seed / set_test05_qsl_rng_seed => test05_qsl_rng_seed;
    unsigned test05_sample_index_rng_seed / set_test05_sample_index_rng_seed => test05_sample_index_rng_seed;
    unsigned test05_schedule_rng_seed / set_test05_schedule_rng_seed => test05_schedule_rng_seed;
    flag print_timestamps / set_print_timestamps => print_timestamps;
    flag performance_issue_unique / set_performance_issue_unique => performance_issue_unique;
    flag performance_issue_same / set_performance_issue_same => performance_issue_same;
    unsigned performance_issue_same_index / set_performance_issue_same_index => performance_issue_same_index;
    unsigned performance_sample_count_override / set_performance_sample_count_override => performance_sample_count_override;
    unsigned accuracy_sample_count_override / set_accuracy_sample_count_override => accuracy_sample_count_override;
    flag use_token_latencies / set_use_token_latencies => use_token_latencies;
    unsigned ttft_latency / set_ttft_latency => server_ttft_latency;
    unsigned tpot_latency / set_tpot_latency => server_tpot_latency;
    flag infer_token_latencies / set_infer_token_latencies => infer_token_latencies;
    unsigned token_latency_scaling_factor / set_token_latency_scaling_factor => token_latency_scaling_factor;
}
