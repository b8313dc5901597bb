"""The embedded egocentric world: a seeded, procedural kitchen seen from a head-mounted camera.

It is egoframe's default data set: MP4 videos, EPIC-KITCHENS-100 and Ego4D FHO style annotations, the
ground-truth scene state of every frame, and the true (PRE-15 input, PNR target) pair of every action.
See docs/world.md.
"""

from egoframe.world.config import WorldConfig
from egoframe.world.make import WorldManifest, load_states, make_world
from egoframe.world.render import render_state
from egoframe.world.state import FrameState, HandState, ObjectState

__all__ = ["WorldConfig", "WorldManifest", "FrameState", "HandState", "ObjectState", "make_world", "load_states",
           "render_state"]
