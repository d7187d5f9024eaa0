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
Training the projector, from the settings of a run to the shipped base adapter.

- :mod:`.config`: :class:`~.config.TrainConfig`, the settings of one run;
- :mod:`.examples`: utterances as cached features and the token ids they should spell;
- :mod:`.objectives`: the losses (``ctc``, ``slots``, ``ce``);
- :mod:`.trainer`: the loop (:func:`~.trainer.train`) and a fresh projector to train;
- :mod:`.align`: the base-adapter recipe end to end (``tinyalign align``);
- :mod:`.bench`: the cost per sample of the objectives (``tinyalign bench-train``).

Personalization (:mod:`tinyalign_ros.personalization`) trains through the same loop.
"""
