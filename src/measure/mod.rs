//! Latency statistics, memory, power and the description of the machine a figure came from.
