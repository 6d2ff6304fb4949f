"""Actions: what a front door does with a Decision (pages, challenges, throttling)."""
