# Copyright 2026 The tinyalign_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The in-process 'middleware' of the stand-in: topic, service and action matching and delivery.

Publishing deep-copies the message into each matched subscription's queue, as serialization
would: a subscriber never shares an object with the publisher. Matching follows DDS: same topic,
same type, compatible QoS (a reliable subscriber does not match a best-effort publisher; a
transient-local subscriber does not match a volatile publisher). Transient-local publishers keep
their last ``depth`` messages for late-joining transient-local subscribers.
"""

from collections import deque
import copy
import threading

from rclpy.qos import compatible, DurabilityPolicy


class Graph:
    def __init__(self, context):
        self.context = context
        self._lock = threading.RLock()
        self.publishers = []
        self.subscriptions = []
        self.services = {}
        self.action_servers = {}
        self.action_clients = []

    # -- topics ------------------------------------------------------------------------------
    def add_publisher(self, publisher):
        with self._lock:
            self.publishers.append(publisher)

    def add_subscription(self, subscription):
        with self._lock:
            self.subscriptions.append(subscription)
            history = []
            if subscription.qos.durability == DurabilityPolicy.TRANSIENT_LOCAL:
                for publisher in self.publishers:
                    if self._matches(publisher, subscription):
                        history.extend(publisher.latched)
        for msg in history:
            subscription.deliver(copy.deepcopy(msg))

    def remove(self, entity):
        with self._lock:
            for registry in (self.publishers, self.subscriptions, self.action_clients):
                if entity in registry:
                    registry.remove(entity)
            for registry in (self.services, self.action_servers):
                for name, servers in list(registry.items()):
                    if entity in servers:
                        servers.remove(entity)

    @staticmethod
    def _matches(publisher, subscription):
        return (publisher.topic_name == subscription.topic_name
                and publisher.msg_type._full_name == subscription.msg_type._full_name
                and compatible(publisher.qos, subscription.qos))

    def publish(self, publisher, msg):
        with self._lock:
            if publisher.qos.durability == DurabilityPolicy.TRANSIENT_LOCAL:
                publisher.latched.append(copy.deepcopy(msg))
            targets = [s for s in self.subscriptions if self._matches(publisher, s)]
        for subscription in targets:
            subscription.deliver(copy.deepcopy(msg))

    def count(self, topic_name, kind):
        with self._lock:
            registry = self.publishers if kind == 'pub' else self.subscriptions
            return sum(1 for e in registry if e.topic_name == topic_name)

    def topic_names_and_types(self):
        with self._lock:
            found = {}
            for e in self.publishers + self.subscriptions:
                found.setdefault(e.topic_name, set()).add(e.msg_type._full_name)
            return sorted((k, sorted(v)) for k, v in found.items())

    # -- services ----------------------------------------------------------------------------
    def add_service(self, service):
        with self._lock:
            self.services.setdefault(service.srv_name, []).append(service)

    def find_service(self, name, srv_type):
        with self._lock:
            for service in self.services.get(name, []):
                if service.srv_type._full_name == srv_type._full_name:
                    return service
        return None

    # -- actions -----------------------------------------------------------------------------
    def add_action_server(self, server):
        with self._lock:
            self.action_servers.setdefault(server.action_name, []).append(server)

    def find_action_server(self, name, action_type):
        with self._lock:
            for server in self.action_servers.get(name, []):
                if server.action_type._full_name == action_type._full_name:
                    return server
        return None

    def add_action_client(self, client):
        with self._lock:
            self.action_clients.append(client)

    def action_clients_for(self, name, action_type):
        with self._lock:
            return [c for c in self.action_clients
                    if c.action_name == name and c.action_type._full_name == action_type._full_name]


class Inbox:
    """A thread-safe queue that wakes the executors of its context when something arrives."""

    def __init__(self, context, maxlen=None):
        self._context = context
        self._items = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def put(self, item):
        with self._lock:
            self._items.append(item)
        self._context.notify()

    def take(self):
        with self._lock:
            return self._items.popleft() if self._items else None

    def __len__(self):
        with self._lock:
            return len(self._items)
