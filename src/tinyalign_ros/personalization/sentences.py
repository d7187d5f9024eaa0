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
The general speech every personalization run mixes in, and the canary it is checked on.

Both are written for this project and synthesized once per work folder (the job's ``_general_sets``):
the general sentences keep the adapter understanding speech that is not the operator's, the canary
(other sentences, voices never trained on) watches for forgetting.
"""

from __future__ import annotations

# General utterances mixed into every personalization run, so the adapter keeps understanding
# speech that is not the operator's: the things people say to a robot assistant. Written for this
# project; spoken by the training voices of the base corpus (synth.DEFAULT_VOICES).
GENERAL_SENTENCES: tuple[str, ...] = (
    'Please move forward one meter.',
    'Turn left and stop at the door.',
    'Turn right at the end of the hallway.',
    'Go back to the charging station.',
    'Stop right there.',
    'Follow me to the kitchen.',
    'Wait here until I come back.',
    'Bring me the red cup from the table.',
    'Pick up the blue box on the shelf.',
    'Put the bottle next to the sink.',
    'Open the gripper slowly.',
    'Close the gripper and lift the object.',
    'How much battery do you have left?',
    'What time is it now?',
    'What is the weather like outside?',
    'Where did you leave the toolbox?',
    'Can you find my keys?',
    'Is the front door locked?',
    'How far is it to the garage?',
    'What can you see in front of you?',
    'Tell me a short joke.',
    'Set a timer for ten minutes.',
    'Remind me to call my sister at six.',
    'Play some quiet music in the living room.',
    'Turn off the lights in the bedroom.',
    'Turn on the fan in the office.',
    'Say hello to our guests.',
    'Introduce yourself to the visitors.',
    'Go to the second floor and check the windows.',
    'Drive slowly, the floor is wet.',
    'Raise your arm a little higher.',
    'Lower the tray to the table.',
    'Rotate ninety degrees to the left.',
    'Take a picture of the plant.',
    'Scan the room for obstacles.',
    'Clean the floor under the table.',
    'Water the plants on the balcony.',
    'Check whether the oven is still on.',
    'How many people are in the room?',
    'Who rang the doorbell?',
    'Read me the first message.',
    'Send a message to the workshop team.',
    'What is on my calendar for tomorrow?',
    'Cancel the meeting at three.',
    'Add milk and bread to the shopping list.',
    'How do I get to the train station?',
    'What is the capital of France?',
    'How many legs does a spider have?',
    'Why is the sky blue?',
    'Spell the word robot.',
    'Count from one to ten.',
    'Repeat what I just said.',
    'Speak a little louder, please.',
    'Speak more slowly.',
    'Thank you, that is all for now.',
    'Good morning, how are you today?',
    'Good night, see you tomorrow.',
    'Go to sleep until I call you.',
    'Wake up and start the patrol.',
    'Return to the dock when you are done.',
    'Carry this package to the front desk.',
    'Deliver the letters to room twelve.',
    'Keep an eye on the children.',
    'Let me know when the laundry is finished.',
    'Measure the temperature in the greenhouse.',
    'Is there anyone in the meeting room?',
    'Move out of the way, please.',
    'Back up a few steps.',
    'Look at me when I talk to you.',
    'Follow the yellow line on the floor.',
    'Avoid the stairs on the left.',
    'Charge your battery before the evening.',
    'Show me the map of the building.',
    'Which room are you in right now?',
    'Find a free parking spot near the entrance.',
    'Hand me the screwdriver, please.',
    'Hold the ladder while I climb.',
    'Put everything back where it was.',
    'Ask the visitor to wait in the lobby.',
    'Open the window in the kitchen a little.',
)

# The canary: other sentences, other (never trained) voices, scored before and after every run.
# It watches for forgetting; the operator's held-out speech cannot, being the operator's.
CANARY_SENTENCES: tuple[str, ...] = (
    'Please bring the green notebook to my desk.',
    'How long will it take to charge fully?',
    'Turn around and go back to the lab.',
    'What did the engineer say this morning?',
    'Switch off the heater in the hall.',
    'Where is the nearest fire exit?',
    'Pick up the spoon that fell on the floor.',
    'Tell the guests that dinner is ready.',
    'Slow down when you pass the corner.',
    'Is the printer in the library working?',
    'Open the curtains in the dining room.',
    'How many boxes are left in the storage room?',
)
