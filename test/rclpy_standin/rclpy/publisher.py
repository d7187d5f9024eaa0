"""rclpy.publisher.Publisher: type-checked publish into the in-process graph."""

from collections import deque

from rclpy.qos import HistoryPolicy


class Publisher:
    def __init__(self, node, msg_type, topic_name, qos, topic=None):
        self._node = node
        self.topic = topic or topic_name  # as given by the user; topic_name is the resolved name
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.qos = qos
        depth = qos.depth if qos.history == HistoryPolicy.KEEP_LAST else None
        self.latched = deque(maxlen=depth or None)
        self._destroyed = False

    @property
    def qos_profile(self):
        return self.qos

    def publish(self, msg):
        if not isinstance(msg, (self.msg_type, bytes)):
            raise TypeError(f'Expected {self.msg_type.__name__}, got {type(msg).__name__}')
        if self._destroyed:
            raise RuntimeError('publisher has been destroyed')
        self._node.context.graph.publish(self, msg)

    def get_subscription_count(self):
        return self._node.context.graph.count(self.topic_name, 'sub')

    def destroy(self):
        self._destroyed = True
        self._node.context.graph.remove(self)
