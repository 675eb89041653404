import PodNetwork
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// A sandbox whose controller was killed (SIGKILL, OOM) leaves its run directory and shared mounts
/// behind; QEMU and virtiofsd die with it (parent-death signal). Each run directory records its owner,
/// and every boot first removes the leftovers of owners that are gone.
public enum StaleSandboxes {
    static let ownerFile = "owner"
    /// What PodNetwork added to a pod namespace (see PodNetwork.record).
    static let networkFile = "network"

    static func recordOwner(in runDirectory: String) {
        let pid = getpid()
        try? Files.writeString(runDirectory + "/" + ownerFile, "\(pid) \(ProcessInfoReader.startTime(pid: pid) ?? 0)\n", mode: 0o600)
    }

    /// True when the recorded owner is this very process or another live one. A directory without
    /// an owner file is being created right now, or is not ours: left alone.
    static func ownerIsAlive(_ runDirectory: String) -> Bool {
        guard let text = try? Files.readString(runDirectory + "/" + ownerFile) else { return true }
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 2, let pid = Int32(fields[0]), let start = UInt64(fields[1]) else { return false }
        return ProcessInfoReader.startTime(pid: pid) == start
    }

    /// Unmounts and removes the run directories under `<root>/sandboxes` whose owner is gone.
    /// Returns the sandbox ids removed.
    @discardableResult
    public static func sweep(root: String) -> [String] {
        let base = root + "/sandboxes"
        var removed: [String] = []
        for entry in Files.entries(base) where entry.isDirectory && !entry.name.hasPrefix(".") {
            let dir = base + "/" + entry.name
            guard !ownerIsAlive(dir) else { continue }
            SharedFiles.unmountAll(under: dir)
            PodNetwork.releaseRecorded(at: dir + "/" + networkFile)
            Files.removeTree(dir)
            removed.append(entry.name)
        }
        return removed
    }
}
