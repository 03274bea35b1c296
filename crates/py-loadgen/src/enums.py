# The enums of MLCommons' mlperf_loadgen, as Python enums with what pybind11's
# enums also offer: named, hashable members, `.name`, `.value`, `int()`,
# `__members__`, construction from the value, and str() "TestScenario.Offline".
# Like pybind11's (and unlike IntEnum), a member never equals a plain int.
import enum


class _LoadgenEnum(enum.Enum):
    def __int__(self):
        return self.value

    def __index__(self):
        return self.value

    def __str__(self):
        return f"{type(self).__name__}.{self.name}"


class TestScenario(_LoadgenEnum):
    SingleStream = 0
    MultiStream = 1
    Server = 2
    Offline = 3


class TestMode(_LoadgenEnum):
    SubmissionRun = 0
    AccuracyOnly = 1
    PerformanceOnly = 2
    FindPeakPerformance = 3


class LoggingMode(_LoadgenEnum):
    AsyncPoll = 0
    EndOfTestOnly = 1
    Synchronous = 2


for _cls in (_LoadgenEnum, TestScenario, TestMode, LoggingMode):
    _cls.__module__ = "mlperf_loadgen"
