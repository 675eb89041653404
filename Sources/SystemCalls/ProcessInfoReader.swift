/// What /proc says about a process: enough to tell a live one from a recycled PID.
public enum ProcessInfoReader {
    /// Field 22 of /proc/PID/stat (start time in clock ticks), or nil when the process is gone.
    public static func startTime(pid: Int32) -> UInt64? {
        guard let text = try? Files.readString("/proc/\(pid)/stat") else { return nil }
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After ')' come field 3 (state) onwards, so field 22 is at index 19.
        guard fields.count > 19 else { return nil }
        if fields[0] == "Z" { return nil }  // a zombie has exited
        return UInt64(fields[19])
    }
}
