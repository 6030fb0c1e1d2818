"""Adapters for engines that run the SDK at scale. Each imports its engine lazily."""
