"""crmail: two-way email sync between a CRM and its users' own mailboxes."""

__version__ = "0.1.0"
