import CSupport
import OCI

/// What this build implements, from the same tables the code uses, so it cannot drift.
public enum SupportedFeatures {
    public static func document() -> Features {
        let mountOptions = (Array(MountOptions.setting.keys) + Array(MountOptions.clearing.keys)
            + Array(MountOptions.propagationFlags.keys)).sorted()
        let version = seccomp_version()
        let libseccomp = version.map { "\($0.pointee.major).\($0.pointee.minor).\($0.pointee.micro)" } ?? "unknown"
        return Features(
            ociVersionMin: "1.0.0", ociVersionMax: OCIVersion.current,
            hooks: ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
            mountOptions: mountOptions,
            linux: LinuxFeatures(
                namespaces: NamespaceType.allCases.map(\.rawValue).sorted(),
                capabilities: CapabilityNames.all,
                cgroup: .init(v1: true, v2: true, systemd: true, systemdUser: false),
                seccomp: .init(enabled: true,
                               actions: Seccomp.actions.filter { $0 != "SCMP_ACT_NOTIFY" }.sorted(),
                               operators: Seccomp.operators.sorted(),
                               archs: Seccomp.architecturesKnown.sorted()),
                apparmor: .init(enabled: false), selinux: .init(enabled: false)),
            annotations: ["io.github.seccomp.libseccomp.version": libseccomp])
    }
}
