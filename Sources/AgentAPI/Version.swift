/// The cocoon release, reported by `cocoon --version` and by the agent's health answer,
/// so a host can tell when its guest image is out of date.
public enum CocoonVersion {
    public static let string = "0.1.0"
}

/// Well-known names both sides of the agent channel agree on.
public enum AgentChannel {
    /// The virtserialport name, visible in the guest at /sys/class/virtio-ports/*/name.
    public static let portName = "cocoon.agent"
    public static let vsockPort: UInt32 = 1024
    /// The mux channel that carries ttrpc to the agent; the host opens it.
    public static let controlChannel = "agent"
    /// The ttrpc service name of the agent API.
    public static let service = "cocoon.agent.v1.Agent"
}
