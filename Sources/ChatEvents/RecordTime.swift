extension Int64 {
    /// `self - other`, held at the bounds instead of overflowing: the times in a record are
    /// whatever its writer put there, and an overflow would stop the process at every restart.
    public func minusSaturating(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }
}
