"""Text communications (UIS chats and site requests → AlfaCRM leads, comments, tasks)."""
