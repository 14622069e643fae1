"""The agent zoo. ``make_agent("sasrec", n_items)`` builds one by CLI name (see :mod:`recgym.agents.registry`);
agent modules are imported lazily, on first use."""

from recgym.agents.base import Agent, AgentConfig
from recgym.agents.registry import AGENTS, available_agents, get_agent_class, make_agent, register_agent, resolved_config

__all__ = ["AGENTS", "Agent", "AgentConfig", "available_agents", "get_agent_class", "make_agent", "register_agent", "resolved_config"]
