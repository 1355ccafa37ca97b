"""Network building blocks shared by the agents: observation torsos and recurrent cores."""
