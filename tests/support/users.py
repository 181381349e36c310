"""A staff member as the services' functions see one (role, scope, names), for tests that call
them directly rather than through a login."""
from dataclasses import dataclass


@dataclass
class User:
    role: str
    district: str | None = None
    department: str | None = None
    display_name: str = "测试"
    username: str = "test"
